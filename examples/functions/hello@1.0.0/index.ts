// The smallest fezz function: the Workers/Deno/Bun fetch shape.
interface Env { GREETING: string }

export default {
  fetch(request: Request, env: Env): Response {
    const name = new URL(request.url).searchParams.get('name') ?? 'world';
    return new Response(`${env.GREETING}, ${name}!\n`);
  },
};
