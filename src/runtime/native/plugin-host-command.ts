/** The command that runs the native plugin host for `libPath`: compiled, or from sources under tsx. */
import { fileURLToPath } from 'node:url';

export function pluginHostCommand(libPath: string): string[] {
  const fromSources = import.meta.url.endsWith('.ts');
  const script = fileURLToPath(new URL(fromSources ? './plugin-host.ts' : './plugin-host.js', import.meta.url));
  // --import resolves from the child's cwd (the function directory): give tsx as a URL.
  return fromSources ? [process.execPath, '--import', import.meta.resolve('tsx'), script, libPath] : [process.execPath, script, libPath];
}
