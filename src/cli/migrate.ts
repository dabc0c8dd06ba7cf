// `mycelis-memory migrate`: applies pending migrations (the service also does this at start) and
// prints which were applied. Logs go to stderr so stdout carries only the result.
import { pino } from 'pino';
import { createLogger } from '../logger.js';
import { parseFlags } from './args.js';
import { CliError, type CliIo, type Command } from './command.js';
import { loadCliConfig } from './config-errors.js';
import { EXIT } from './exit-codes.js';
import { describe, exitCodeFor } from './failure.js';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply pending database migrations and print what was applied',
  usage: `Usage: mycelis-memory migrate

Applies the pending migrations (migrations/*.sql, forward-only, under an advisory lock; already
applied ones are skipped) to the database configured by DATABASE_URL or DB_* (or the embedded store
when none is set), and prints each applied version on stdout. Exits 3 when the database cannot be
reached, 2 on invalid configuration.`,
  async run(args: string[], io: CliIo) {
    parseFlags(migrateCommand, args, {});
    const config = loadCliConfig(io);
    const logger = createLogger(config.logLevel, pino.destination({ dest: 2, sync: true }));
    const [{ openDatabase }, { migrate }] = await Promise.all([import('../store/database.js'), import('../store/migrate.js')]);
    const target = config.database.kind === 'postgres' ? config.database.redactedUrl : `the embedded store in ${config.database.embeddedDataDir}`;
    let db: Awaited<ReturnType<typeof openDatabase>>;
    try {
      db = await openDatabase(config.database, logger);
    } catch (err) {
      const code = exitCodeFor(err);
      throw new CliError(`cannot open ${target}: ${describe(err)}`, code === EXIT.FAILURE ? EXIT.CONNECT : code, { cause: err });
    }
    try {
      const { applied } = await migrate(db.pool, logger);
      for (const v of applied) io.stdout.write(`applied ${v}\n`);
      io.stderr.write(applied.length > 0 ? `migrated ${target}: ${applied.length} applied\n` : `${target} is up to date: nothing to apply\n`);
      return EXIT.OK;
    } catch (err) {
      throw new CliError(`migrating ${target} failed: ${describe(err)}`, exitCodeFor(err), { cause: err });
    } finally {
      await db.close();
    }
  },
};
