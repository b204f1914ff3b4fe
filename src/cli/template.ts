import { UsageError } from './errors.js'

// A small subset of the Go templates docker accepts for --format: field paths ({{.Id}},
// {{.Config.Env}}) and {{json .Field}}. Enough for scripts; anything else is refused clearly
// rather than half-interpreted.
const ACTION_RE = /\{\{-?\s*(.*?)\s*-?\}\}/g
const PATH_RE = /^\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?$/

type Action = { fn: 'print' | 'json', path: string[] }

function parseAction (source: string, template: string): Action {
  const parts = source.split(/\s+/)
  let fn: Action['fn'] = 'print'
  let expr = parts[0] ?? ''
  if (parts.length === 2 && parts[0] === 'json') {
    fn = 'json'
    expr = parts[1] ?? ''
  } else if (parts.length !== 1) {
    throw new UsageError('ERR_INVALID_ARGUMENT', `unsupported --format action "{{${source}}}" in "${template}": use {{.Field}} or {{json .Field}}`)
  }
  if (!PATH_RE.test(expr)) {
    throw new UsageError('ERR_INVALID_ARGUMENT', `unsupported --format action "{{${source}}}" in "${template}": use {{.Field}} or {{json .Field}}`)
  }
  return { fn, path: expr === '.' ? [] : expr.slice(1).split('.') }
}

function lookup (value: unknown, path: string[]): unknown {
  let v = value
  for (const key of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) return undefined
    v = (v as Record<string, unknown>)[key]
  }
  return v
}

function show (value: unknown): string {
  if (value === undefined) return '<no value>'
  if (value === null) return '<nil>'
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value)
}

/** Compiles a template once; the result renders one object to a string (no newline added). */
export function compileTemplate (template: string): (value: unknown) => string {
  const pieces: Array<string | Action> = []
  let last = 0
  for (const m of template.matchAll(ACTION_RE)) {
    pieces.push(template.slice(last, m.index))
    pieces.push(parseAction(m[1] ?? '', template))
    last = m.index + m[0].length
  }
  const tail = template.slice(last)
  if (tail.includes('{{') || tail.includes('}}')) {
    throw new UsageError('ERR_INVALID_ARGUMENT', `unbalanced braces in --format "${template}"`)
  }
  pieces.push(tail)
  return (value: unknown): string => pieces.map(p => {
    if (typeof p === 'string') return p.replace(/\\n/g, '\n').replace(/\\t/g, '\t')
    const v = lookup(value, p.path)
    return p.fn === 'json' ? JSON.stringify(v ?? null) : show(v)
  }).join('')
}
