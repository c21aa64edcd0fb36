/**
 * The templates of `fezz new --template <name>`: the files each writes and what to run next.
 * `plain` (the default) is the TypeScript greeting function of ./function.ts.
 */
import { functionTemplate, type TemplateVars } from './function.js';
import { honoTemplate, ittyTemplate } from './frameworks.js';
import { scheduledTemplate } from './scheduled.js';
import { websocketTemplate } from './websocket.js';

export type { TemplateVars };

/** The template names, `plain` first (the default). */
export const TEMPLATE_NAMES = ['plain', 'hono', 'itty', 'scheduled', 'websocket'] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

/** Where the new function is, for the "next" lines. */
export interface NextVars extends TemplateVars {
  /** The new directory as shown (relative to the working directory when inside it). */
  shownDir: string;
  /** The functions directory as shown. */
  functionsDir: string;
}

export interface Template {
  /** One line for `fezz new --help`. */
  summary: string;
  /** Relative file name -> contents. Every template also gets a `.gitignore` (see {@link templateFiles}). */
  files(vars: TemplateVars): Record<string, string>;
  /** Commands to run next, each with why. */
  next(vars: NextVars): Array<[string, string]>;
}

const serve = (v: NextVars): [string, string] => [`fezz dev --dir ${v.functionsDir}`, 'serve it on http://127.0.0.1:3000 (fezz serve --dev)'];
const deploy = (v: NextVars): [string, string] => [`fezz deploy ${v.shownDir} --host-url <admin URL>`, 'or upload it to another running host (needs FEZZ_TOKEN)'];

export const TEMPLATES: Record<TemplateName, Template> = {
  plain: {
    summary: 'a TypeScript fetch handler with a unit test (default)',
    files: functionTemplate,
    next: (v) => [
      [`node --import tsx --test ${v.shownDir}/index.test.ts`, 'unit test, no host needed'],
      [`fezz serve --dir ${v.functionsDir} --dev`, 'serve it on http://127.0.0.1:3000'],
      [`curl localhost:3000/${v.name}/you`, '-> {"message":"Hello, you!",...}'],
      deploy(v),
    ],
  },
  hono: {
    summary: 'a Hono app, as for Cloudflare Workers (npm install fetches hono)',
    files: honoTemplate,
    next: (v) => [
      [`(cd ${v.shownDir} && npm install)`, 'fetch hono into the function\'s own node_modules'],
      serve(v),
      [`curl localhost:3000/${v.name}/hello/you`, '-> {"message":"Hello, you!"}'],
      deploy(v),
    ],
  },
  itty: {
    summary: 'an itty-router v5 app, as for Cloudflare Workers (npm install fetches itty-router)',
    files: ittyTemplate,
    next: (v) => [
      [`(cd ${v.shownDir} && npm install)`, 'fetch itty-router into the function\'s own node_modules'],
      serve(v),
      [`curl localhost:3000/${v.name}/hello/you`, '-> {"message":"Hello, you!"}'],
      deploy(v),
    ],
  },
  scheduled: {
    summary: 'a cron-triggered function: scheduled(controller, env, ctx) and "triggers": { "crons": [...] }',
    files: scheduledTemplate,
    next: (v) => [
      [`node --import tsx --test ${v.shownDir}/index.test.ts`, 'unit test, no host needed'],
      serve(v),
      [`curl localhost:3000/${v.name}`, '-> {"runs":0,...} until the first tick (every 5 minutes)'],
      deploy(v),
    ],
  },
  websocket: {
    summary: 'a WebSocket echo server: new WebSocketPair(), server.accept(), a 101 with webSocket',
    files: websocketTemplate,
    next: (v) => [
      serve(v),
      [`npx wscat -c ws://127.0.0.1:3000/${v.name}`, 'type a line, get "echo: <line>" back'],
      deploy(v),
    ],
  },
};

/** Kept out of version control in every new function: local secrets, dependencies, build output. */
const GITIGNORE = `# written by fezz new
.dev.vars
node_modules/
.fezz/
`;

/**
 * The files template `name` writes for `vars`, with its `.gitignore`.
 */
export function templateFiles(name: TemplateName, vars: TemplateVars): Record<string, string> {
  return { ...TEMPLATES[name].files(vars), '.gitignore': GITIGNORE };
}
