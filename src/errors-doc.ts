import { errorSpecs } from './errors.js';

/** docs/errors.md, rendered from the registry so the two list the same codes. */
export function renderErrorsDoc(): string {
  const rows = Object.entries(errorSpecs).map(([code, spec]) =>
    `| \`${code}\` | ${spec.statusCode} | ${spec.message.replace(/%s/g, '…').replace(/\|/g, '\\|')} |`);
  return [
    '# fezz error codes',
    '',
    'Every error fezz produces has a code from this table. HTTP error bodies have the fixed',
    'shape `{ "error", "code", "message", "statusCode" }`; the same codes appear in logs and',
    'in `FezzError.code` thrown by the library. Codes are never reused once retired.',
    'Generated from `src/errors.ts` by `npm run gen:errors-doc`; a test fails when it is stale.',
    '',
    '| code | status | message |',
    '| --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
