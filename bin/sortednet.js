#!/usr/bin/env node
import { cli } from '../dist/src/cli/main.js';

cli(process.argv.slice(2)).then((code) => process.exit(code));
