// Column layout like docker's tabwriter (minwidth 10, padding 3): every column but the last is
// padded to its widest cell plus the padding, and the last column carries no trailing spaces.

export interface TableOptions {
  minWidth?: number
  padding?: number
}

const MIN_WIDTH = 10
const PADDING = 3

/** Lays out rows (the first is usually the header) and returns them as lines ending in \n. */
export function formatTable (rows: string[][], options: TableOptions = {}): string {
  if (rows.length === 0) return ''
  const minWidth = options.minWidth ?? MIN_WIDTH
  const padding = options.padding ?? PADDING
  const columns = Math.max(...rows.map(r => r.length))
  const widths: number[] = []
  for (let c = 0; c < columns - 1; c++) {
    let width = minWidth
    for (const row of rows) width = Math.max(width, (row[c] ?? '').length + padding)
    widths.push(width)
  }
  let out = ''
  for (const row of rows) {
    let line = ''
    for (let c = 0; c < row.length; c++) {
      const cell = row[c] ?? ''
      line += c < row.length - 1 ? cell.padEnd(widths[c] ?? 0) : cell
    }
    out += line.trimEnd() + '\n'
  }
  return out
}
