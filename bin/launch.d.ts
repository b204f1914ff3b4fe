// Types of the plain-JS launcher (bin/launch.js), for the TypeScript that imports it.
export declare const DAEMON_V8_FLAGS: string[]
export declare function distIsCurrent (dir?: string): boolean
export declare function launch (entry: string, options?: { v8Flags?: string[] }): Promise<void>
