#!/usr/bin/env node
// Runs dist/ when it is current, else the sources through tsx (see launch.js).
import { launch } from './launch.js'
await launch('src/cli/main')
