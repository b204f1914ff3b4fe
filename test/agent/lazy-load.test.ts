// What joeyd loads: the P2P stack (libp2p and the piece protocol, ~20 MiB of a process)
// only on a node that has a supernode to talk to.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Starts and stops an agent in a fresh process; returns the URLs of the modules it resolved. */
async function modulesLoaded (log: string, args: string[]): Promise<string[]> {
  const agentUrl = pathToFileURL(join(ROOT, 'src/agent/index.ts')).href
  const script = `
    const { createAgent, parseAgentConfig } = await import(${JSON.stringify(agentUrl)})
    const agent = createAgent(parseAgentConfig(${JSON.stringify(args)}, {}))
    await agent.start()
    await agent.stop()
  `
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './test/fixtures/record-imports.mjs', '--input-type=module', '-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, JOEY_IMPORT_LOG: log }
  })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const code = await new Promise<number | null>((resolve) => { child.once('exit', resolve) })
  assert.equal(code, 0, stderr)
  return (await readFile(log, 'utf8')).split('\n').filter(Boolean)
}

const isLibp2p = (url: string): boolean => /\/node_modules\/(libp2p|@libp2p\/[^/]+|@chainsafe\/libp2p-[^/]+)\//.test(url)

test('joeyd loads libp2p only when a supernode is configured', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'joey-lazy-'))
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const base = ['--data-root', join(dir, 'data'), '-H', `unix://${join(dir, 'joeyd.sock')}`, '--log-level', 'error']

  const plain = await modulesLoaded(join(dir, 'plain.log'), base)
  assert.ok(plain.some(u => u.endsWith('/src/agent/index.ts')), 'the import log works')
  assert.deepEqual(plain.filter(isLibp2p), [], 'no libp2p module without a supernode')

  // An unreachable supernode: the agent still starts, with its P2P host listening.
  const p2p = await modulesLoaded(join(dir, 'p2p.log'), [...base, '--supernode', 'http://127.0.0.1:9', '--p2p-listen', '/ip4/127.0.0.1/tcp/0'])
  assert.ok(p2p.some(isLibp2p), 'libp2p is loaded with a supernode')
})
