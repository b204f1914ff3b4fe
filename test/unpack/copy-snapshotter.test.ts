import { snapshotterSuite } from './snapshotter-suite.js'

snapshotterSuite('copy')
