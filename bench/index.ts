/**
 * npm run bench [-- --quick] [-- --only a,b]: runs the benchmark cases one after another,
 * prints each ratio against its target, and writes bench/results/latest.{json,md}.
 */
import '../src/common/polyfill.js'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, totalmem, release } from 'node:os'
import type { BenchOptions, CaseResult } from './lib.js'

/**
 * Cases in the order they run. Each module under cases/ exports `run`; they are loaded one
 * at a time so a case's imports (and their memory) never weigh on another's numbers.
 */
const CASES = ['direct-pull', 'mirror', 'unpack', 'cold-start', 'transfer', 'scheduler', 'simulate', 'cluster']

async function loadCase (name: string): Promise<(o: BenchOptions) => Promise<CaseResult>> {
  const mod = await import(`./cases/${name}.js`) as { run: (o: BenchOptions) => Promise<CaseResult> }
  return mod.run
}

function fmt (v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const onlyArg = args.find(a => a.startsWith('--only='))?.slice('--only='.length) ?? (args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined)
  const names = onlyArg !== undefined ? onlyArg.split(',') : CASES
  const results: CaseResult[] = []
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`
  console.log(`Joey benchmarks (${quick ? 'quick' : 'full'}) on ${machine}`)
  for (const name of names) {
    if (!CASES.includes(name)) { console.error(`unknown case ${name}; cases: ${CASES.join(', ')}`); process.exit(2) }
    console.log(`\n## ${name}`)
    try {
      const fn = await loadCase(name)
      const r = await fn({ quick })
      results.push(r)
      console.log(r.description)
      for (const m of r.metrics) {
        const verdict = m.target === undefined ? '' : `  target ${m.target}: ${m.ok === true ? 'met' : 'MISSED'}`
        console.log(`  ${m.name.padEnd(34)} ${fmt(m.value).padStart(9)} ${m.unit}${verdict}`)
      }
      for (const n of r.notes) console.log(`  note: ${n}`)
    } catch (err) {
      console.error(`  case ${name} failed: ${(err as Error).stack ?? String(err)}`)
      results.push({ name, description: 'failed', metrics: [], notes: [String(err)] })
    }
  }
  await mkdir('bench/results', { recursive: true })
  const stamp = new Date().toISOString()
  await writeFile('bench/results/latest.json', JSON.stringify({ date: stamp, machine, quick, results }, null, 2) + '\n')
  const md = [`# Benchmark results`, '', `${stamp} — ${machine} — \`npm run bench${quick ? ' -- --quick' : ''}\``, '']
  for (const r of results) {
    md.push(`## ${r.name}`, '', r.description, '', '| metric | value | target | |', '| --- | --- | --- | --- |')
    for (const m of r.metrics) md.push(`| ${m.name} | ${fmt(m.value)} ${m.unit} | ${m.target ?? ''} | ${m.target === undefined ? '' : m.ok === true ? 'met' : '**missed**'} |`)
    for (const n of r.notes) md.push('', `- ${n}`)
    md.push('')
  }
  await writeFile('bench/results/latest.md', md.join('\n'))
  console.log('\nwrote bench/results/latest.json and bench/results/latest.md')
}

void main()
