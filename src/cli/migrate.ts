// `mycelis-memory migrate`: applies pending migrations (the service also does this at start), creates the
// log's partitions ahead, and prints what was applied. `--plan` prints what would be done (each pending
// migration's summary and the locks it takes, with the size of log_entries now) and changes nothing.
// Logs go to stderr so stdout carries only the result.
import { pino } from 'pino';
import { createLogger } from '../logger.js';
import { parseFlags } from './args.js';
import { CliError, type CliIo, type Command } from './command.js';
import { loadCliConfig } from './config-errors.js';
import { EXIT } from './exit-codes.js';
import { describe, exitCodeFor } from './failure.js';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply pending database migrations and print what was applied (--plan: only say what would be done)',
  usage: `Usage: mycelis-memory migrate [--plan]

Applies the pending migrations (migrations/*.sql, forward-only, under an advisory lock; already
applied ones are skipped) to the database configured by DATABASE_URL or DB_* (or the embedded store
when none is set), creates the log's partitions ahead (LOG_PARTITION_INTERVAL), and prints each
applied version on stdout. Safe to run again: nothing applied twice.

  --plan   print the pending migrations, what each does and what it locks, and the size of
           log_entries now; change nothing

Exits 3 when the database cannot be reached, 2 on invalid configuration.`,
  async run(args: string[], io: CliIo) {
    const { values } = parseFlags(migrateCommand, args, { plan: { type: 'boolean' } });
    const config = loadCliConfig(io);
    const logger = createLogger(config.logLevel, pino.destination({ dest: 2, sync: true }));
    const [{ openDatabase }, { migrate, planMigrations }, { partitionSpecFor }] = await Promise.all([
      import('../store/database.js'),
      import('../store/migrate.js'),
      import('../store/partitions.js'),
    ]);
    const target = config.database.kind === 'postgres' ? config.database.redactedUrl : `the embedded store in ${config.database.embeddedDataDir}`;
    let db: Awaited<ReturnType<typeof openDatabase>>;
    try {
      db = await openDatabase(config.database, logger);
    } catch (err) {
      const code = exitCodeFor(err);
      throw new CliError(`cannot open ${target}: ${describe(err)}`, code === EXIT.FAILURE ? EXIT.CONNECT : code, { cause: err });
    }
    try {
      if (values['plan'] === true) {
        const plan = await planMigrations(db.pool);
        io.stdout.write(
          `log_entries: ${plan.logEntries}, about ${plan.logRowsEstimate.toLocaleString('en-US')} rows, ${(plan.logBytes / 1024 ** 2).toFixed(0)} MiB\n`,
        );
        if (plan.pending.length === 0) io.stdout.write('nothing to apply\n');
        for (const m of plan.pending) {
          io.stdout.write(`pending ${m.version}\n`);
          if (m.summary) io.stdout.write(`  does:  ${m.summary}\n`);
          if (m.locks) io.stdout.write(`  locks: ${m.locks}\n`);
        }
        return EXIT.OK;
      }
      const { applied, partitionsCreated } = await migrate(db.pool, logger, undefined, {
        partitions: partitionSpecFor(config.logPartitionIntervalMs, config.ingest.streamMaxAgeMs),
        retentionMs: config.logRetentionMs,
      });
      for (const v of applied) io.stdout.write(`applied ${v}\n`);
      if (partitionsCreated.length > 0) io.stdout.write(`created ${partitionsCreated.length} log partitions (${partitionsCreated[0]} .. ${partitionsCreated.at(-1)})\n`);
      io.stderr.write(applied.length > 0 ? `migrated ${target}: ${applied.length} applied\n` : `${target} is up to date: nothing to apply\n`);
      return EXIT.OK;
    } catch (err) {
      throw new CliError(`migrating ${target} failed: ${describe(err)}`, exitCodeFor(err), { cause: err });
    } finally {
      await db.close();
    }
  },
};
