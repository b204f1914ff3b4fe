#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx's loader, so a fresh clone needs no build.
import '../src/common/polyfill-js.js'
import { register } from 'tsx/esm/api'
register()
await import('../src/agent/main.ts')
