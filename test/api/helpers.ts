// A scripted ImageService behind the real Engine API app, so route tests check what the
// client sees (status, headers, bodies, stream lines) and what reached the service.
import type { FastifyInstance } from 'fastify'
import { JoeyError, silentLogger } from '../../src/common/index.js'
import { buildEngineApi, createAgentMetrics, type AgentMetrics, type SystemInfo } from '../../src/api/index.js'
import type { ImageDetail, ImageService, ImageSummary, PullEvent, PullOptions, PullResult, RemoveResult } from '../../src/image/index.js'
import type { Usage } from '../../src/content/index.js'
import type { TransferStats } from '../../src/transfer/index.js'

export const CONFIG_DIGEST = `sha256:${'a'.repeat(64)}`
export const MANIFEST_DIGEST = `sha256:${'b'.repeat(64)}`
export const LAYER_DIGEST = `sha256:${'c'.repeat(64)}`
export const LAYER_SHORT = 'c'.repeat(12)

export const system: SystemInfo = {
  id: 'test-engine-id',
  name: 'testhost',
  version: '9.9.9',
  gitCommit: 'abc123',
  buildTime: '2024-01-01T00:00:00Z',
  dataRoot: '/tmp/joey-test',
  driver: 'content-store',
  operatingSystem: 'Test OS',
  osVersion: '1',
  kernelVersion: '6.0.0-test',
  osType: 'linux',
  arch: 'amd64',
  machine: 'x86_64',
  ncpu: 2,
  memTotal: 1024,
  insecureRegistries: ['registry.test:5000'],
  runtimeVersion: 'node20'
}

export const summary: ImageSummary = {
  id: CONFIG_DIGEST,
  repoTags: ['127.0.0.1:5000/busybox:latest'],
  repoDigests: [`127.0.0.1:5000/busybox@${MANIFEST_DIGEST}`],
  created: 1704067200,
  size: 1234,
  platform: { os: 'linux', architecture: 'amd64' }
}

export const detail: ImageDetail = {
  ...summary,
  manifestDigest: MANIFEST_DIGEST,
  config: {
    created: '2024-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'], Labels: { team: 'joey' } },
    rootfs: { type: 'layers', diff_ids: [`sha256:${'d'.repeat(64)}`] }
  },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: LAYER_DIGEST, size: 1000 }],
  rootfs: { type: 'layers', diff_ids: [`sha256:${'d'.repeat(64)}`] }
}

export interface PullCall { ref: string, options: PullOptions }

/** Pull behaviour per test: emit events, then resolve or throw. */
export type PullScript = (ref: string, options: PullOptions, emit: (e: PullEvent) => void) => Promise<void>

export const happyPull: PullScript = async (ref, _options, emit) => {
  emit({ id: 'latest', status: 'Pulling from busybox' })
  emit({ id: LAYER_SHORT, status: 'Pulling fs layer' })
  emit({ id: LAYER_SHORT, status: 'Downloading', progressDetail: { current: 1_234_567, total: 3_400_000 } })
  emit({ id: LAYER_SHORT, status: 'Verifying Checksum' })
  emit({ id: LAYER_SHORT, status: 'Download complete' })
  emit({ id: LAYER_SHORT, status: 'Pull complete' })
  emit({ status: `Digest: ${MANIFEST_DIGEST}` })
  emit({ status: `Status: Downloaded newer image for ${ref}` })
}

export class FakeImages implements ImageService {
  pulls: PullCall[] = []
  removes: Array<{ name: string, force: boolean | undefined }> = []
  inspects: string[] = []
  script: PullScript = happyPull
  images: ImageDetail[] = [detail]

  async pull (ref: string, options: PullOptions = {}): Promise<PullResult> {
    this.pulls.push({ ref, options })
    await this.script(ref, options, (e) => options.onEvent?.(e))
    return { name: ref, digest: MANIFEST_DIGEST, id: CONFIG_DIGEST, manifest: { mediaType: 'x', digest: MANIFEST_DIGEST, size: 1 }, layers: [], downloaded: true }
  }

  async list (): Promise<ImageSummary[]> {
    return this.images.map(({ manifestDigest: _m, config: _c, layers: _l, rootfs: _r, ...s }) => s)
  }

  async inspect (nameOrId: string): Promise<ImageDetail> {
    this.inspects.push(nameOrId)
    const found = this.images.find(i => i.id === nameOrId || i.repoTags.includes(nameOrId))
    if (found === undefined) throw new JoeyError('ERR_IMAGE_NOT_FOUND', `No such image: ${nameOrId}`)
    return found
  }

  async remove (nameOrId: string, options: { force?: boolean } = {}): Promise<RemoveResult> {
    this.removes.push({ name: nameOrId, force: options.force })
    if (nameOrId === 'shared') throw new JoeyError('ERR_IN_USE', 'conflict: unable to delete aaaaaaaaaaaa (must be forced) - image is referenced in multiple repositories')
    await this.inspect(nameOrId)
    return { untagged: [nameOrId, `127.0.0.1:5000/busybox@${MANIFEST_DIGEST}`], deleted: [CONFIG_DIGEST, LAYER_DIGEST] }
  }

  tags: Array<{ source: string, target: string }> = []
  async tag (source: string, target: string): Promise<void> {
    await this.inspect(source)
    this.tags.push({ source, target })
  }
}

export interface TestApp {
  app: FastifyInstance
  images: FakeImages
  metrics: AgentMetrics
  shutdown: AbortController
}

export async function makeApp (sources: { stats?: TransferStats, usage?: Usage } = {}): Promise<TestApp> {
  const images = new FakeImages()
  const metrics = createAgentMetrics({
    ...(sources.stats !== undefined ? { transferStats: () => sources.stats! } : {}),
    ...(sources.usage !== undefined ? { usage: async () => sources.usage! } : {})
  })
  const shutdown = new AbortController()
  const app = await buildEngineApi({ signal: shutdown.signal }, { logger: silentLogger(), images, metrics, system })
  return { app, images, metrics, shutdown }
}

/** Splits a newline-delimited JSON body into messages. */
export function jsonLines (body: string): Array<Record<string, any>> {
  return body.split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, any>)
}

export function authHeader (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}
