import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { detectSnapshotter } from '../../src/unpack/index.js'
import { snapshotterSuite } from './snapshotter-suite.js'

// The overlay snapshotter needs root and a kernel that mounts overlayfs on this filesystem
// (not overlay on overlay); detectSnapshotter() tries a real mount to find out.
const probe = await mkdtemp(join(tmpdir(), 'joey-overlay-detect-'))
const detected = await detectSnapshotter(probe).finally(async () => await rm(probe, { recursive: true, force: true }))
snapshotterSuite('overlay', { skip: detected === 'overlay' ? false : 'overlayfs cannot be mounted here (needs root and overlay support on the temp filesystem)' })
