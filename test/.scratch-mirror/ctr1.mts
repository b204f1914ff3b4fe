import { mkdtemp, writeFile, mkdir } from 'node:fs/promises'
import { spawn, execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startAgent } from '../cluster/harness.js'
import { busyboxImage } from '../fixtures/images.js'
import { startRegistry } from '../fixtures/registry.js'
import { startProxy } from '../fixtures/proxy.js'
const run = promisify(execFile)
const dir = await mkdtemp('/tmp/exp/ctr-')
const reg = await startRegistry()
const bb = await busyboxImage()
await reg.push('busybox', 'latest', bb)
await reg.push('library/busybox', 'latest', bb)
const proxy = await startProxy(reg.url)
const agent = await startAgent(dir, 'a1', ['--mirror-upstream', proxy.host])
console.log('mirror', agent.mirror)
const cfg = join(dir, 'config.toml')
await writeFile(cfg, `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${dir}/c.sock"\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${dir}/certs.d"\n`)
const c = spawn('/usr/bin/containerd', ['--config', cfg, '--root', `${dir}/root`, '--state', `${dir}/state`, '--address', `${dir}/c.sock`], { stdio: ['ignore', 'ignore', 'pipe'] })
let log = ''; c.stderr.on('data', d => { log += d })
await sleep(1500)
const mh = new URL(agent.mirror).host
for (const h of [proxy.host, 'docker.io']) {
  await mkdir(join(dir, 'certs.d', h), { recursive: true })
  await writeFile(join(dir, 'certs.d', h, 'hosts.toml'), `server = "${h === 'docker.io' ? 'https://registry-1.docker.io' : 'http://' + h}"\n[host."http://${mh}"]\n  capabilities = ["pull", "resolve"]\n`)
}
try {
  const r = await run('ctr', ['--address', `${dir}/c.sock`, 'images', 'pull', '--http-trace', '--plain-http', '--hosts-dir', join(dir, 'certs.d'), `${proxy.host}/busybox:latest`])
  console.log(r.stderr)
} catch (e) { console.log('ERR', e) }
console.log(JSON.stringify(proxy.stats, null, 1))
proxy.reset()
console.log((await run('ctr', ['--address', `${dir}/c.sock`, 'images', 'rm', '--sync', `${proxy.host}/busybox:latest`])).stdout)
console.log((await run('ctr', ['--address', `${dir}/c.sock`, 'content', 'ls'])).stdout)

try {
  const r = await run('ctr', ['--address', `${dir}/c.sock`, 'images', 'pull', '--hosts-dir', join(dir, 'certs.d'), `docker.io/library/busybox:latest`])
  console.log(r.stdout, r.stderr)
} catch (e) { console.log('ERR', e) }
console.log(JSON.stringify(proxy.stats, null, 1))
try { const r = await run('ctr', ['--address', `${dir}/c.sock`, 'run', '--rm', '--snapshotter', 'overlayfs', 'docker.io/library/busybox:latest', 't1', 'echo', 'hi']); console.log('RUN', JSON.stringify(r)) } catch (e) { console.log('RUNERR', e) }
try { const r = await run('ctr', ['--address', `${dir}/c.sock`, 'images', 'ls']); console.log(r.stdout) ; console.log((await run('ctr', ['--address', `${dir}/c.sock`, 'content', 'ls'])).stdout)} catch (e) { console.log('LSERR', e) }
c.kill('SIGTERM'); await agent.stop(); await proxy.stop(); await reg.stop()

console.log(agent.logs().slice(-3000))
