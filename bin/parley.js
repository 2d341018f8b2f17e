#!/usr/bin/env -S node --initial-old-space-size=128
// Runs the TypeScript CLI through tsx, so that `npx parley` works without a build step.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli.ts');
