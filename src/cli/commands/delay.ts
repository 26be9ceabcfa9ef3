/**
 * `spillway delay stats`: the broker's delayed messages as one JSON document: pending by horizon
 * (due within a minute, an hour, a day, later), the next due time (epoch ms and ISO), counters since
 * the broker opened (scheduled, fired, dead-lettered) and the recent firing lateness.
 */
import { runReportCommand } from './report-command.js';

export const delayUsage = `usage: spillway delay stats [--broker URL] [--token T] [--ca-file PEM]
  pending delayed messages by horizon (<1 min, <1 h, <1 day, later) and the next due time`;

export function runDelay(argv: string[]): Promise<number> {
  return runReportCommand(argv, 'delay', 'stats', async (sw) => {
    const stats = await sw.admin.delayStats();
    const nextDue = stats.nextDueMs === null ? null : new Date(stats.nextDueMs).toISOString();
    return { ...stats, nextDue };
  });
}
