/**
 * `.dev.vars`: local secrets for `fezz serve --dev` (`fezz dev`), the file wrangler reads for
 * `wrangler dev`. It sits in the function's directory, is read only in dev mode, is never
 * uploaded by `fezz deploy`, and belongs in `.gitignore`. docs/secrets.md.
 *
 * Format (dotenv, a subset): one `NAME=value` per line; blank lines and lines starting with
 * `#` are skipped; `export NAME=value` is accepted; a value may be wrapped in double quotes
 * (then `\n`, `\r`, `\t`, `\"` and `\\` are escapes) or single quotes (taken as written);
 * an unquoted value is trimmed and ends at ` #` (a comment).
 */
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fezzError } from '../errors.js';
import { MAX_SECRET_NAME_LENGTH, MAX_SECRET_VALUE_BYTES, SECRET_NAME_PATTERN } from './store.js';

/** The file's name in a function directory. */
export const DEV_VARS_FILE = '.dev.vars';
/** Largest `.dev.vars` read, in bytes. */
const MAX_DEV_VARS_BYTES = 1024 * 1024; // 1 MiB

/**
 * Parse the text of a `.dev.vars` file. Error messages name the line, never a value.
 * @param shown the file as named in messages.
 * @throws FezzError FEZZ_ERR_DEV_VARS_INVALID (a line that is not `NAME=value`, a bad name,
 *   an unterminated quote, a value over 64 KiB or with a NUL).
 */
export function parseDevVars(text: string, shown: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const bad = (why: string): never => { throw fezzError('FEZZ_ERR_DEV_VARS_INVALID', [shown, `line ${lineNo}: ${why}`]); };
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('export ')) line = line.slice(7).trimStart();
    const eq = line.indexOf('=');
    if (eq <= 0) bad('expected NAME=value');
    const name = line.slice(0, eq).trim();
    if (!SECRET_NAME_PATTERN.test(name) || name.length > MAX_SECRET_NAME_LENGTH) bad(`${JSON.stringify(name.slice(0, 40))} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)`);
    if (name.startsWith('FEZZ_')) bad(`${name}: FEZZ_* names are the host's own`);
    let rest = line.slice(eq + 1).trimStart();
    let value: string;
    if (rest.startsWith('"')) {
      // A double-quoted value may span lines; escapes are read.
      let acc = '';
      let j = 1;
      let done = false;
      for (;;) {
        while (j < rest.length) {
          const c = rest[j]!;
          if (c === '\\' && j + 1 < rest.length) {
            const e = rest[j + 1]!;
            acc += e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : e;
            j += 2;
            continue;
          }
          if (c === '"') { done = true; break; }
          acc += c;
          j++;
        }
        if (done) break;
        if (i + 1 >= lines.length) bad(`the value of ${name} has no closing "`);
        i++;
        acc += '\n';
        rest = lines[i]!;
        j = 0;
      }
      const after = rest.slice(j + 1).trim();
      if (after !== '' && !after.startsWith('#')) bad(`unexpected text after the closing " of ${name}`);
      value = acc;
    } else if (rest.startsWith("'")) {
      const end = rest.indexOf("'", 1);
      if (end < 0) bad(`the value of ${name} has no closing '`);
      const after = rest.slice(end + 1).trim();
      if (after !== '' && !after.startsWith('#')) bad(`unexpected text after the closing ' of ${name}`);
      value = rest.slice(1, end);
    } else {
      const hash = rest.search(/\s#/);
      value = (hash >= 0 ? rest.slice(0, hash) : rest).trim();
    }
    if (Buffer.byteLength(value) > MAX_SECRET_VALUE_BYTES) bad(`the value of ${name} is over ${MAX_SECRET_VALUE_BYTES} bytes`);
    if (value.includes('\0')) bad(`the value of ${name} contains a NUL character`);
    out.set(name, value);
  }
  return out;
}

/**
 * Read `<dir>/.dev.vars`, or null when there is none. It must be a regular file (a symbolic
 * link is refused: it could point anywhere).
 * @throws FezzError FEZZ_ERR_DEV_VARS_INVALID (a link, too large, unreadable, a bad line).
 */
export async function readDevVars(dir: string): Promise<Map<string, string> | null> {
  const file = path.join(dir, DEV_VARS_FILE);
  const shown = path.relative(process.cwd(), file) || file;
  let st;
  try {
    st = await lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fezzError('FEZZ_ERR_DEV_VARS_INVALID', [shown, `cannot read it (${(err as NodeJS.ErrnoException).code})`], err);
  }
  if (!st.isFile()) throw fezzError('FEZZ_ERR_DEV_VARS_INVALID', [shown, 'not a regular file (symbolic links are not followed)']);
  if (st.size > MAX_DEV_VARS_BYTES) throw fezzError('FEZZ_ERR_DEV_VARS_INVALID', [shown, `${st.size} bytes, over the ${MAX_DEV_VARS_BYTES} it may have`]);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw fezzError('FEZZ_ERR_DEV_VARS_INVALID', [shown, `cannot read it (${(err as NodeJS.ErrnoException).code})`], err);
  }
  return parseDevVars(text, shown);
}
