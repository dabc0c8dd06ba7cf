import { type Config, ConfigError, loadConfig } from '../config/config.js';
import type { CliIo } from './command.js';
import { CliError } from './command.js';
import { EXIT } from './exit-codes.js';

/** loadConfig, with a ConfigError turned into the one-line report and exit code 2. */
export function loadCliConfig(io: CliIo): Config {
  try {
    return loadConfig(io.env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(`invalid configuration: ${err.message}`, EXIT.CONFIG, { cause: err });
    throw err;
  }
}
