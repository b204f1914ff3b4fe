#!/usr/bin/env node
// Runs dist/ when it is current, else the sources through tsx (see launch.js).
import { DAEMON_V8_FLAGS, launch } from './launch.js'
await launch('supernode/main', { v8Flags: DAEMON_V8_FLAGS })
