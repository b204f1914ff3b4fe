/**
 * A plain SVG line chart for benchmark results: no dependency, readable as text, renders in
 * any browser and on GitHub. X values are placed evenly in their sorted order (N = 2, 4, 8,
 * 16 read better that way than on a linear axis).
 */

export interface Series {
  name: string
  /** [x, y]; a NaN y leaves a gap (a failed run). */
  points: Array<[number, number]>
  color: string
  dashed?: boolean
  /** Drawn thicker and without markers, as a reference such as a bound. */
  reference?: boolean
}

export interface ChartOptions {
  title: string
  subtitle?: string
  xLabel: string
  yLabel: string
  series: Series[]
  width?: number
  height?: number
}

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** Round step (1, 2 or 5 × 10^k) that splits `max` into about five ticks. */
function tickStep (max: number): number {
  const raw = max / 5
  const mag = 10 ** Math.floor(Math.log10(raw))
  const n = raw / mag
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag
}

export function lineChart (o: ChartOptions): string {
  const width = o.width ?? 760
  const height = o.height ?? 440
  const left = 64
  const right = 200
  const top = o.subtitle !== undefined ? 58 : 40
  const bottom = 52
  const plotW = width - left - right
  const plotH = height - top - bottom
  const xs = [...new Set(o.series.flatMap(s => s.points.map(p => p[0])))].sort((a, b) => a - b)
  const ys = o.series.flatMap(s => s.points.map(p => p[1])).filter(Number.isFinite)
  const yMax = Math.max(1e-9, ...ys) * 1.08
  const step = tickStep(yMax)
  const top0 = Math.ceil(yMax / step) * step
  const xAt = (x: number): number => left + (xs.length <= 1 ? plotW / 2 : xs.indexOf(x) / (xs.length - 1) * plotW)
  const yAt = (y: number): number => top + plotH - y / top0 * plotH
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${esc(o.title)}</text>`
  ]
  if (o.subtitle !== undefined) out.push(`<text x="${left}" y="40" fill="#555">${esc(o.subtitle)}</text>`)
  for (let v = 0; v <= top0 + step / 2; v += step) {
    const y = yAt(v).toFixed(1)
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y}" y2="${y}" stroke="#e4e4e4"/>`,
      `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${Number(v.toPrecision(6))}</text>`)
  }
  for (const x of xs) {
    out.push(`<line x1="${xAt(x).toFixed(1)}" x2="${xAt(x).toFixed(1)}" y1="${top}" y2="${top + plotH}" stroke="#f0f0f0"/>`,
      `<text x="${xAt(x).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle">${x}</text>`)
  }
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`,
    `<text x="${left + plotW / 2}" y="${height - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`)
  o.series.forEach((s, i) => {
    const dash = s.dashed === true ? ' stroke-dasharray="6 4"' : ''
    const widthPx = s.reference === true ? 3 : 2
    // A NaN point ends a segment: a failed run is not drawn as if it had a value.
    let d = ''
    let pen = false
    for (const [x, y] of [...s.points].sort((a, b) => a[0] - b[0])) {
      if (!Number.isFinite(y)) { pen = false; continue }
      d += `${pen ? 'L' : 'M'}${xAt(x).toFixed(1)} ${yAt(y).toFixed(1)} `
      pen = true
    }
    out.push(`<path d="${d.trim()}" fill="none" stroke="${s.color}" stroke-width="${widthPx}"${dash}${s.reference === true ? ' opacity="0.5"' : ''}/>`)
    if (s.reference !== true) {
      for (const [x, y] of s.points) {
        if (Number.isFinite(y)) out.push(`<circle cx="${xAt(x).toFixed(1)}" cy="${yAt(y).toFixed(1)}" r="3" fill="${s.color}"/>`)
      }
    }
    const ly = top + 8 + i * 20
    const lx = left + plotW + 14
    out.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="${widthPx}"${dash}${s.reference === true ? ' opacity="0.5"' : ''}/>`,
      `<text x="${lx + 32}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}
