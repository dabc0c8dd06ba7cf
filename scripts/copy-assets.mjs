// tsc does not copy non-TypeScript files: the descriptor set (reflection, Connect) and web assets.
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
mkdirSync('dist/src/gen', { recursive: true });
cpSync('src/gen/descriptors.binpb', 'dist/src/gen/descriptors.binpb');
// The live page (scripts/build-web.mjs): replace the previous build's page and hashed assets.
if (existsSync('web/dist')) {
  rmSync('dist/web/assets', { recursive: true, force: true });
  cpSync('web/dist', 'dist/web', { recursive: true });
}
