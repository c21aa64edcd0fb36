/**
 * Exclusive claims on keys, taken at once or refused: never waited for. Deploys and deletes
 * claim the version directory they work on (registry/deploy.ts), so a second operation on
 * the same version is answered 409 at once instead of racing the first on the file system.
 */
export class KeyLock {
  readonly #held = new Set<string>();

  /**
   * Claim `key`.
   * @returns a function that gives the claim up (calling it again does nothing), or null
   *   when `key` is claimed already.
   */
  tryAcquire(key: string): (() => void) | null {
    if (this.#held.has(key)) return null;
    this.#held.add(key);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#held.delete(key);
    };
  }

  /** Whether `key` is claimed now. */
  isHeld(key: string): boolean {
    return this.#held.has(key);
  }
}
