import { CronExpressionParser } from 'cron-parser';
import type { FlowGraph, NodeOf } from '../modules/flows/flows.graph.ts';

/** When a schedule trigger next fires after `after`, or null. */
export function nextFire(node: NodeOf<'schedule_trigger'>, after: Date): Date | null {
  if ('at' in node.schedule) {
    const at = new Date(node.schedule.at);
    return at > after ? at : null;
  }
  return CronExpressionParser.parse(node.schedule.cron, { tz: node.schedule.timeZone, currentDate: after }).next().toDate();
}

/** The earliest next fire of the graph's schedule triggers (null: none). */
export function nextScheduleAt(graph: FlowGraph, after: Date): Date | null {
  let best: Date | null = null;
  for (const node of graph.nodes) {
    if (node.type !== 'schedule_trigger') continue;
    const at = nextFire(node, new Date(after.getTime() - 1));
    if (at && (!best || at < best)) best = at;
  }
  return best;
}
