// A tiny terminal emulator for checking what the progress renderer leaves on screen.
import assert from 'node:assert/strict'

export const ESC = '\x1b'

/**
 * Just enough of a VT100 to replay the renderer's output: \r, \n, cursor up/down, erase
 * line, and auto-wrap-free printing. Returns the visible lines.
 */
export class Screen {
  lines: string[][] = [[]]
  row = 0
  col = 0
  maxWidth = 0

  feed (data: string): void {
    for (let i = 0; i < data.length; i++) {
      const ch = data[i]
      if (ch === '\x1b') {
        const m = new RegExp(`^${ESC}\\[(\\d*)([ABK])`).exec(data.slice(i))
        assert.ok(m, `unknown escape sequence at ${JSON.stringify(data.slice(i, i + 8))}`)
        const n = Number(m[1] === '' ? '1' : m[1])
        if (m[2] === 'A') this.row = Math.max(0, this.row - n)
        else if (m[2] === 'B') this.row = Math.min(this.lines.length - 1, this.row + n)
        else if (m[1] === '2') this.lines[this.row] = []
        i += m[0].length - 1
      } else if (ch === '\r') {
        this.col = 0
      } else if (ch === '\n') {
        this.row++
        this.col = 0
        if (this.row === this.lines.length) this.lines.push([])
      } else {
        const line = this.lines[this.row] ??= []
        line[this.col++] = ch ?? ''
        this.maxWidth = Math.max(this.maxWidth, line.length)
      }
    }
  }

  text (): string[] {
    const out = this.lines.map(l => Array.from(l, c => c ?? ' ').join(''))
    while (out.length > 0 && out[out.length - 1] === '') out.pop()
    return out
  }
}
