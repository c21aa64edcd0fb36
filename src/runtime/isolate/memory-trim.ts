/**
 * Giving an exited isolate's native memory back to the OS.
 *
 * Every worker thread allocates from its own glibc malloc arena. When the worker exits, glibc
 * keeps what the arena holds mapped for reuse, so after idle eviction the host's RSS stayed
 * about 1.2 MB per evicted isolate above where it started (bench density suite: 89% of the
 * growth given back). `malloc_trim(0)` returns the free pages of every arena; measured here,
 * 100 isolates warmed then evicted left the host 37-45 MB above its fresh RSS, and 12-15 MB
 * after the trim.
 *
 * The trim runs once, 200 ms after the last isolate exit of a burst, on libuv's thread pool
 * (koffi async call), so the event loop never waits for it. It needs glibc: elsewhere
 * (musl, macOS) or if koffi cannot load libc, it is switched off for good, silently.
 */

/** Quiet time after the last isolate exit before the trim, ms. */
const TRIM_DELAY_MS = 200;

type Trim = { async(pad: number, cb: (err: unknown, res: number) => void): void };

let timer: NodeJS.Timeout | null = null;
let trim: Trim | null | undefined; // undefined: not tried yet; null: unavailable
let running = false;

function hasGlibc(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return typeof header?.glibcVersionRuntime === 'string';
}

async function loadTrim(): Promise<Trim | null> {
  if (!hasGlibc()) return null;
  try {
    const { default: koffi } = await import('koffi');
    return koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as unknown as Trim;
  } catch {
    return null;
  }
}

async function run(): Promise<void> {
  timer = null;
  if (running) return;
  running = true;
  try {
    if (trim === undefined) trim = await loadTrim();
    const fn = trim;
    if (fn !== null) await new Promise<void>((resolve) => { fn.async(0, () => resolve()); });
  } finally {
    running = false;
  }
}

/**
 * Note that an isolate worker exited: trim malloc's free memory once things are quiet
 * (200 ms after the last call). Cheap to call on every exit; never throws.
 */
export function trimAfterExit(): void {
  if (trim === null) return;
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(() => { void run(); }, TRIM_DELAY_MS);
  timer.unref();
}
