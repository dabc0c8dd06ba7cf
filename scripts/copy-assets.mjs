// tsc does not copy non-TypeScript files: the descriptor set (reflection, Connect) and web assets.
import { cpSync, existsSync, mkdirSync } from 'node:fs';
mkdirSync('dist/src/gen', { recursive: true });
cpSync('src/gen/descriptors.binpb', 'dist/src/gen/descriptors.binpb');
if (existsSync('web/dist')) cpSync('web/dist', 'dist/web', { recursive: true });
