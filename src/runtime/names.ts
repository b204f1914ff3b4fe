import { randomBytes, randomInt } from 'node:crypto'
import { JoeyError } from '../common/index.js'

/** docker's rule for container names. */
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/

const ADJECTIVES = [
  'agile', 'bold', 'brave', 'bright', 'calm', 'clever', 'cool', 'crisp', 'eager', 'fair', 'gentle', 'happy',
  'jolly', 'keen', 'kind', 'lively', 'lucid', 'merry', 'nimble', 'noble', 'patient', 'quick', 'quiet', 'rapid',
  'serene', 'sharp', 'steady', 'sturdy', 'swift', 'tidy', 'vivid', 'wise', 'zealous'
]
const NOUNS = [
  'albatross', 'badger', 'beaver', 'bison', 'condor', 'crane', 'dolphin', 'falcon', 'ferret', 'gecko', 'heron',
  'ibex', 'jaguar', 'kestrel', 'koala', 'lemur', 'lynx', 'marmot', 'narwhal', 'ocelot', 'otter', 'panda', 'puffin',
  'quokka', 'raven', 'salmon', 'seal', 'stork', 'tapir', 'walrus', 'wombat', 'yak', 'zebra'
]

/** 64 lowercase hex characters, like docker's container ids. */
export function newContainerId (): string {
  return randomBytes(32).toString('hex')
}

/** A readable name not in `taken`; a numeric suffix is added when the pairs run out. */
export function generateName (taken: (name: string) => boolean): string {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${NOUNS[randomInt(NOUNS.length)]}`
    const name = attempt < 10 ? base : `${base}${randomInt(1000)}`
    if (!taken(name)) return name
  }
  return `joey_${randomBytes(6).toString('hex')}`
}

/** Strips docker's leading '/' and checks the name. */
export function normalizeName (name: string): string {
  const n = name.startsWith('/') ? name.slice(1) : name
  if (!NAME_RE.test(n)) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`, { detail: { name } })
  }
  return n
}
