/**
 * fezz — the embeddable library. Public API only.
 * @example
 * import { createHost } from 'fezz';
 * const host = await createHost({ dir: './functions', port: 3000 });
 * await host.listen();
 */
export { createHost, Host, type FunctionInfo } from './host/host.js';
export type { HostOptions, ResolvedHostOptions } from './config/options.js';
export type { Middleware, Next, RequestContext } from './host/context.js';
export { requestId, accessLog, cors, bodyLimit, type CorsOptions } from './host/middleware.js';
export type { Env, Context, Handler } from './runtime/handler/contract.js';
export type { Manifest } from './manifest/schema.js';
export type { LoadProblem } from './registry/registry.js';
export { FezzError, errorSpecs, type FezzErrorCode } from './errors.js';
