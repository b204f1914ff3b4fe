/**
 * Piece digests of blobs this node holds whole, kept beside the content store so the node
 * can keep serving them to peers (who verify every piece) after the partial is gone and
 * after a restart. One small JSON file per blob.
 */
import { mkdir, readdir, readFile, rm, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { digestHex, isDigest, type Logger } from '../common/index.js'

export interface PieceIndexEntry {
  digest: string
  size: number
  pieceSize: number
  pieceDigests: string[]
}

export class PieceIndex {
  private readonly entries = new Map<string, PieceIndexEntry>()

  constructor (readonly dir: string, private readonly logger: Logger) {}

  async load (): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith('.json')) continue
      try {
        const e = JSON.parse(await readFile(join(this.dir, name), 'utf8')) as PieceIndexEntry
        if (isDigest(e.digest) && Number.isSafeInteger(e.size) && Number.isSafeInteger(e.pieceSize) && Array.isArray(e.pieceDigests) && e.pieceDigests.every(isDigest)) {
          this.entries.set(e.digest, e)
        }
      } catch (err) {
        this.logger.warn({ err, file: name }, 'ignoring an unreadable piece index entry')
      }
    }
  }

  get (digest: string): PieceIndexEntry | undefined { return this.entries.get(digest) }

  list (): PieceIndexEntry[] { return [...this.entries.values()] }

  async save (entry: PieceIndexEntry): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    const path = join(this.dir, `${digestHex(entry.digest)}.json`)
    await writeFile(path + '.tmp', JSON.stringify(entry))
    await rename(path + '.tmp', path)
    this.entries.set(entry.digest, entry)
  }

  async delete (digest: string): Promise<void> {
    this.entries.delete(digest)
    await rm(join(this.dir, `${digestHex(digest)}.json`), { force: true })
  }
}
