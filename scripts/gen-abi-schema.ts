// Writes docs/abi.schema.json from src/abi/schema.ts (the definitions the host validates with).
import { writeFileSync } from 'node:fs';
import { abiJsonSchema } from '../src/abi/schema.js';

writeFileSync(new URL('../docs/abi.schema.json', import.meta.url), JSON.stringify(abiJsonSchema(), null, 2) + '\n');
