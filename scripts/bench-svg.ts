// The picture of bench/results.json: one row per figure, a bar of its ratio to the ceiling measured
// in the same run (figure / ceiling, on a log scale so that 6% and 3x both read), a mark at its
// target, the figure, its unit and its ceiling in words, green when the target is met, red when
// missed, grey when there is none. SVG written by hand (no dependency), meant for 900 px wide.
// `node scripts/bench-svg.ts` redraws bench/results.svg from bench/results.json; bench-all.ts calls
// renderResultsSvg() itself.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** One figure of a benchmark, as bench-all.ts writes it into bench/results.json. */
export interface Figure {
  /** The bench's name: bench/<bench>.json holds its last run. */
  bench: string;
  /** The npm script that writes that file (`bench:<bench>`), when package.json has one. */
  script: string | null;
  name: string;
  unit: string;
  figure: number;
  /** The same work's ceiling measured in the same run (or, for a figure with a limit only, the limit). */
  ceiling: number | null;
  ceilingName: string | null;
  ceilingUnit: string | null;
  /** figure / ceiling. */
  ratio: number | null;
  /** The target of the ratio: at least it (better: higher) or at most it (better: lower). */
  target: number | null;
  better: 'higher' | 'lower';
  met: boolean | null;
  /** When the bench ran. */
  date: string | null;
  /** Anything else worth a word (latency, rounds). */
  note?: string;
  /** The run reported failures: its figures are not to be trusted. */
  untrusted?: boolean;
  /** `npm run bench` ran it this time and it failed: the figures are those of the file it left, if any. */
  stale?: boolean;
}

export interface Results {
  generated: string;
  machine: { node?: string; cores?: number; cpu?: string | null; postgres?: string } | null;
  figures: Figure[];
}

const WIDTH = 900;
const PAD = 16;
const TEXT_W = 360;
const BAR_X = PAD + TEXT_W + 8;
const BAR_W = 376;
const RIGHT_X = BAR_X + BAR_W + 14;
const ROW_H = 42;
const GROUP_H = 26;
const COLOURS = { met: '#2e7d32', missed: '#c62828', none: '#78909c', track: '#eef1f4', grid: '#c9d1d9', text: '#1f2328', muted: '#57606a' };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

/** 1,234 / 56.7 / 0.12: a figure as people read it. */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  const abs = Math.abs(n);
  if (abs >= 100) return Math.round(n).toLocaleString('en-US');
  if (abs >= 10) return n.toFixed(1).replace(/\.0$/, '');
  return n.toFixed(2).replace(/\.?0+$/, '');
}

/** A ratio as a share under 1 (78%) or a multiple from 1 on (1.78x). */
export function formatRatio(r: number): string {
  if (!Number.isFinite(r)) return 'n/a';
  if (r < 1) return `${r < 0.1 ? (r * 100).toFixed(1).replace(/\.0$/, '') : Math.round(r * 100)}%`;
  return Number.isInteger(r) ? `${r}x` : `${r.toFixed(2)}x`;
}

export function targetText(f: Pick<Figure, 'target' | 'better' | 'ceilingName'>): string {
  if (f.target === null) return 'no target';
  // A figure against a limit rather than a ceiling: its target is to stay under it.
  if (f.better === 'lower' && f.target === 1 && f.ceilingName) return `under ${f.ceilingName}`;
  return `${f.better === 'lower' ? '≤' : '≥'} ${formatRatio(f.target)}`;
}

export function renderResultsSvg(results: Results): string {
  const figures = results.figures;
  // The log axis: from 1% (or less, when a ratio is lower) to a bit past the largest ratio or target.
  const values = figures.flatMap((f) => [f.ratio, f.target]).filter((v): v is number => typeof v === 'number' && v > 0);
  const lo = Math.min(0.01, ...values.map((v) => v / 1.5));
  const hi = Math.max(2, ...values.map((v) => v * 1.25));
  const [l0, l1] = [Math.log10(lo), Math.log10(hi)];
  const xOf = (r: number) => BAR_X + ((Math.log10(Math.min(Math.max(r, lo), hi)) - l0) / (l1 - l0)) * BAR_W;

  const groups = new Map<string, Figure[]>();
  for (const f of figures) groups.set(f.bench, [...(groups.get(f.bench) ?? []), f]);
  const top = 74;
  const height = top + groups.size * GROUP_H + figures.length * ROW_H + 64;
  const out: string[] = [];
  const m = results.machine;
  const machine = m ? [m.cores && `${m.cores} cores`, m.cpu, m.node && `Node ${m.node.replace(/^v/, '')}`, m.postgres && `PostgreSQL ${m.postgres.split(' ')[0]}`].filter(Boolean).join(', ') : '';
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" role="img" aria-labelledby="title">`,
    `<title id="title">Herald benchmarks: each figure against the ceiling measured in the same run</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${PAD}" y="26" font-size="17" font-weight="600" fill="${COLOURS.text}">Herald benchmarks: each figure against its ceiling, measured in the same run</text>`,
    `<text x="${PAD}" y="45" font-size="11.5" fill="${COLOURS.muted}">${esc(`bar = figure / ceiling (log scale); | = target; collected ${results.generated.slice(0, 16).replace('T', ' ')} UTC${machine ? ` from runs on ${machine}` : ''}`)}</text>`,
  );
  // The axis: grid lines at decades, the ceiling (1) drawn stronger.
  const ticks = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30].filter((v) => v >= lo && v <= hi);
  const axisBottom = height - 58;
  for (const v of ticks) {
    const x = xOf(v).toFixed(1);
    const ceiling = v === 1;
    out.push(`<line x1="${x}" y1="${top - 8}" x2="${x}" y2="${axisBottom}" stroke="${ceiling ? '#8c959f' : COLOURS.grid}" stroke-width="${ceiling ? 1.2 : 0.6}"${ceiling ? ' stroke-dasharray="4 3"' : ''}/>`);
    out.push(`<text x="${x}" y="${top - 12}" font-size="10.5" text-anchor="middle" fill="${COLOURS.muted}">${ceiling ? 'ceiling' : v < 1 ? formatRatio(v) : `${v}x`}</text>`);
  }

  let y = top;
  for (const [bench, list] of groups) {
    const dates = [...new Set(list.map((f) => f.date?.slice(0, 10)).filter(Boolean))].join(', ');
    out.push(`<rect x="${PAD / 2}" y="${y}" width="${WIDTH - PAD}" height="${GROUP_H - 4}" rx="3" fill="#f6f8fa"/>`);
    const heading = list[0]!.script ? `npm run ${list[0]!.script}` : `bench/${bench}.json`;
    out.push(`<text x="${PAD}" y="${y + 15}" font-size="12.5" font-weight="600" fill="${COLOURS.text}">${esc(heading)}<tspan dx="10" font-weight="400" fill="${COLOURS.muted}">${dates ? esc(dates) : ''}${list.some((f) => f.untrusted) ? '   (the run reported errors)' : ''}${list.some((f) => f.stale) ? '   (its latest run failed: figures from the file it left)' : ''}</tspan></text>`);
    y += GROUP_H;
    for (const f of list) {
      const colour = f.met === true ? COLOURS.met : f.met === false ? COLOURS.missed : COLOURS.none;
      const mid = y + ROW_H / 2 - 4;
      const figureText = `${formatNumber(f.figure)} ${f.unit}`;
      const ceilingText = f.ceiling === null ? '' : ` vs ${formatNumber(f.ceiling)} ${f.ceilingUnit ?? f.unit}${f.ceilingName ? ` (${f.ceilingName})` : ''}`;
      const detail = `${figureText}${ceilingText}${f.note ? `; ${f.note}` : ''}`;
      out.push(`<g><title>${esc(`${f.name}: ${detail}; ratio ${f.ratio === null ? 'n/a' : formatRatio(f.ratio)}, ${f.target === null ? 'no target' : `target ${targetText(f)}${f.met ? ' (met)' : ' (missed)'}`}`)}</title>`);
      out.push(`<text x="${PAD}" y="${y + 15}" font-size="12.5" fill="${COLOURS.text}">${esc(clip(f.name, 56))}</text>`);
      out.push(`<text x="${PAD}" y="${y + 30}" font-size="10.5" fill="${COLOURS.muted}">${esc(clip(detail, 64))}</text>`);
      out.push(`<rect x="${BAR_X}" y="${mid - 8}" width="${BAR_W}" height="16" rx="2" fill="${COLOURS.track}"/>`);
      if (f.ratio !== null && f.ratio > 0) {
        out.push(`<rect x="${BAR_X}" y="${mid - 8}" width="${(xOf(f.ratio) - BAR_X).toFixed(1)}" height="16" rx="2" fill="${colour}" fill-opacity="${f.untrusted ? 0.45 : 0.9}"/>`);
      }
      if (f.target !== null) {
        const tx = xOf(f.target).toFixed(1);
        out.push(`<line x1="${tx}" y1="${mid - 12}" x2="${tx}" y2="${mid + 12}" stroke="${COLOURS.text}" stroke-width="2.2"/>`);
      }
      const verdict = f.met === null ? targetText(f) : `${f.met ? 'met' : 'missed'}, ${targetText(f)}`;
      out.push(`<text x="${RIGHT_X}" y="${y + 15}" font-size="13" font-weight="600" fill="${colour}">${f.ratio === null ? 'n/a' : formatRatio(f.ratio)}</text>`);
      out.push(`<text x="${RIGHT_X}" y="${y + 30}" font-size="10.5" fill="${COLOURS.muted}">${esc(verdict)}</text>`);
      out.push('</g>');
      y += ROW_H;
    }
  }

  // The legend.
  const ly = height - 30;
  const swatch = (x: number, colour: string, label: string) =>
    `<rect x="${x}" y="${ly - 9}" width="14" height="10" rx="2" fill="${colour}"/><text x="${x + 19}" y="${ly}" font-size="11" fill="${COLOURS.muted}">${label}</text>`;
  out.push(swatch(PAD, COLOURS.met, 'target met'), swatch(PAD + 100, COLOURS.missed, 'target missed'), swatch(PAD + 215, COLOURS.none, 'no target'));
  out.push(`<line x1="${PAD + 315}" y1="${ly - 11}" x2="${PAD + 315}" y2="${ly + 2}" stroke="${COLOURS.text}" stroke-width="2.2"/><text x="${PAD + 322}" y="${ly}" font-size="11" fill="${COLOURS.muted}">target</text>`);
  out.push(`<text x="${PAD + 380}" y="${ly}" font-size="11" fill="${COLOURS.muted}">ceiling: the same work done the simplest way, same run, same machine (bench/*.json)</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const results = JSON.parse(readFileSync('bench/results.json', 'utf8')) as Results;
  writeFileSync('bench/results.svg', renderResultsSvg(results));
  process.stdout.write(`bench/results.svg: ${results.figures.length} figures\n`);
}
