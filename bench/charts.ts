/**
 * SVG charts written by hand: grouped bar charts on a linear or a logarithmic value axis, with a
 * title, a legend, axis ticks with units, a value label on every bar and a marker ('n/a') where a
 * value is missing. No dependency: the output is a plain SVG 1.1 document (renders in browsers,
 * GitHub, rsvg-convert and ImageMagick).
 *
 * Layout (pixels): title and subtitle on top, the legend under them, then the plot; group labels
 * (one or two lines, '\n' separated) under the plot. Text widths are estimated (no font metrics
 * here) from the character count: ~0.6 em per character of a sans-serif font.
 */

export interface BarSeries {
  name: string;
  /** CSS colour; default from a fixed palette by position. */
  color?: string;
}

export interface GroupedBarChart {
  title: string;
  subtitle?: string;
  /** Categories along the x axis, left to right; '\n' breaks a label into lines. */
  groups: string[];
  series: BarSeries[];
  /** values[series][group]; undefined (or, on a log axis, <= 0) draws the missing label instead of a bar. */
  values: Array<Array<number | undefined>>;
  /** missing[series][group]: the text drawn in place of a missing bar. Default 'n/a'. */
  missing?: Array<Array<string | undefined>>;
  /**
   * notes[series][group]: a bar with a note is drawn faded with a dashed outline and the note after
   * its value label (e.g. '(saturated)': a figure that is not like the others).
   */
  notes?: Array<Array<string | undefined>>;
  /** The value axis, with its unit: 'messages per second'. */
  yAxisLabel: string;
  scale: 'linear' | 'log';
  /** Formats bar labels and ticks. Default `formatCompact`. */
  format?: (value: number) => string;
  /** An optional note under the group labels (e.g. what 'n/a' means). */
  footnote?: string;
  width?: number;
  height?: number;
}

export const defaultPalette = ['#2563eb', '#059669', '#dc2626', '#d97706', '#7c3aed', '#0891b2', '#4b5563'];

const fontFamily = 'DejaVu Sans, Helvetica, Arial, sans-serif';

/** Bars wider than this look like blocks, not bars (a chart with one or two groups). */
const barWidthMax = 72;

/** Estimated width in pixels of `text` at `fontSize` in a sans-serif font (DejaVu Sans-like widths). */
export function textWidth(text: string, fontSize: number): number {
  let ems = 0;
  for (const character of text) {
    if ("iljtf.,:;|!'()[] ".includes(character)) ems += 0.34;
    else if ('mwMW@%'.includes(character)) ems += 0.9;
    else if (character >= 'A' && character <= 'Z') ems += 0.7;
    else ems += 0.6;
  }
  return ems * fontSize;
}

/** 1,234,567 → '1.23M' · 123,456 → '123k' · 12,345 → '12.3k' · 999 → '999' · 1.5 → '1.5'. */
export function formatCompact(value: number): string {
  const magnitude = Math.abs(value);
  const trim = (text: string): string => text.replace(/\.0+$/, '').replace(/(\.\d*?)0+$/, '$1');
  if (magnitude >= 1e9) return `${trim((value / 1e9).toPrecision(3))}G`;
  if (magnitude >= 1e6) return `${trim((value / 1e6).toPrecision(3))}M`;
  if (magnitude >= 1e3) return `${trim((value / 1e3).toPrecision(3))}k`;
  if (magnitude >= 100 || magnitude === 0) return String(Math.round(value));
  return trim(value.toPrecision(2));
}

/** Microseconds as a duration: 850 µs · 1.2 ms · 210 ms · 1.5 s. */
export function formatMicroseconds(us: number): string {
  const trim = (text: string): string => text.replace(/\.0+$/, '').replace(/(\.\d*?)0+$/, '$1');
  if (us < 1000) return `${trim(us < 10 ? us.toPrecision(2) : String(Math.round(us)))} µs`;
  if (us < 1_000_000) return `${trim((us / 1000).toPrecision(us < 10_000 ? 2 : 3))} ms`;
  return `${trim((us / 1_000_000).toPrecision(3))} s`;
}

/** Escapes text for SVG content and attribute values. */
export function escapeXml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&apos;');
}

/** 1, 2 or 5 times a power of ten, the smallest at least `rough`. */
function niceStep(rough: number): number {
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= rough) return factor * power;
  return 10 * power;
}

export interface Axis {
  /** Value → pixel offset from the bottom of the plot (0 .. plotHeight). */
  position(value: number): number;
  ticks: number[];
  /** Ticks with a fainter grid line (log axis: 2x and 5x each decade). */
  minorTicks: number[];
  /** Whether the minor ticks are labelled too (a log axis of at most 2 decades). */
  labelMinorTicks: boolean;
  min: number;
  max: number;
}

/** A linear axis from 0 to a nice top above `max` with ~5 ticks, or a log axis over whole decades. */
export function valueAxis(values: readonly number[], scale: 'linear' | 'log', plotHeight: number): Axis {
  if (scale === 'linear') {
    const max = Math.max(0, ...values) * 1.08; // headroom for the value labels
    const step = max > 0 ? niceStep(max / 5) : 1;
    const top = max > 0 ? Math.ceil((max * 1.0001) / step) * step : 1;
    const ticks: number[] = [];
    for (let tick = 0; tick <= top + step / 2; tick += step) ticks.push(Number(tick.toPrecision(12)));
    return {
      position: (value) => (Math.max(0, value) / top) * plotHeight,
      ticks,
      minorTicks: [],
      labelMinorTicks: false,
      min: 0,
      max: top,
    };
  }
  const positive = values.filter((value) => value > 0);
  const low = positive.length > 0 ? Math.min(...positive) : 1;
  const high = positive.length > 0 ? Math.max(...positive) * 1.5 : 10; // headroom for the value labels
  const lowPower = Math.floor(Math.log10(low));
  let highPower = Math.ceil(Math.log10(high * 1.0001));
  if (highPower <= lowPower) highPower = lowPower + 1;
  const min = 10 ** lowPower;
  const max = 10 ** highPower;
  const ticks: number[] = [];
  const minorTicks: number[] = [];
  for (let power = lowPower; power <= highPower; power += 1) {
    ticks.push(10 ** power);
    if (power < highPower) minorTicks.push(2 * 10 ** power, 5 * 10 ** power);
  }
  const span = highPower - lowPower;
  return {
    position: (value) =>
      value <= 0 ? 0 : Math.min(1, Math.max(0, (Math.log10(value) - lowPower) / span)) * plotHeight,
    ticks,
    minorTicks,
    labelMinorTicks: span <= 2,
    min,
    max,
  };
}

/** The chart as an SVG document. */
export function groupedBarChartSvg(chart: GroupedBarChart): string {
  const width = chart.width ?? 960;
  const height = chart.height ?? 540;
  const format = chart.format ?? formatCompact;
  const seriesCount = chart.series.length;
  const groupCount = chart.groups.length;
  if (chart.values.length !== seriesCount || chart.values.some((row) => row.length !== groupCount)) {
    throw new RangeError('values must hold one row per series and one value per group');
  }
  const present = (value: number | undefined): value is number =>
    value !== undefined && Number.isFinite(value) && (chart.scale === 'linear' ? value >= 0 : value > 0);

  const groupLabelLines = Math.max(1, ...chart.groups.map((group) => group.split('\n').length));
  const top = chart.subtitle === undefined ? 78 : 96;
  const bottomMargin = 26 + groupLabelLines * 15 + (chart.footnote === undefined ? 0 : 18);
  const axis0 = valueAxis(chart.values.flat().filter(present), chart.scale, 1);
  const tickLabelWidth = Math.max(...axis0.ticks.map((tick) => textWidth(format(tick), 11)));
  const left = Math.round(Math.max(64, tickLabelWidth + 40));
  const right = 20;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottomMargin;
  const bottom = top + plotHeight;
  const axis = valueAxis(chart.values.flat().filter(present), chart.scale, plotHeight);
  const y = (value: number): number => bottom - axis.position(value);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${fontFamily}">`,
    `<title>${escapeXml(chart.title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text class="title" x="${width / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold" fill="#111827">${escapeXml(chart.title)}</text>`,
  );
  if (chart.subtitle !== undefined) {
    parts.push(
      `<text class="subtitle" x="${width / 2}" y="46" text-anchor="middle" font-size="12" fill="#4b5563">${escapeXml(chart.subtitle)}</text>`,
    );
  }

  // Legend: one row, centred, under the title.
  const legendY = top - 26;
  const entries = chart.series.map((series, index) => ({
    name: series.name,
    color: series.color ?? defaultPalette[index % defaultPalette.length]!,
    width: 16 + textWidth(series.name, 12) + 18,
  }));
  let legendX = (width - entries.reduce((sum, entry) => sum + entry.width, 0)) / 2;
  parts.push('<g class="legend">');
  for (const entry of entries) {
    parts.push(
      `<rect x="${fixed(legendX)}" y="${legendY - 10}" width="12" height="12" fill="${entry.color}"/>`,
      `<text x="${fixed(legendX + 16)}" y="${legendY}" font-size="12" fill="#111827">${escapeXml(entry.name)}</text>`,
    );
    legendX += entry.width;
  }
  parts.push('</g>');

  // Grid and value axis.
  parts.push('<g class="grid">');
  for (const tick of axis.minorTicks) {
    parts.push(
      `<line x1="${left}" x2="${left + plotWidth}" y1="${fixed(y(tick))}" y2="${fixed(y(tick))}" stroke="#f3f4f6" stroke-width="1"/>`,
    );
    if (axis.labelMinorTicks) {
      parts.push(
        `<text class="tick minor" x="${left - 6}" y="${fixed(y(tick) + 4)}" text-anchor="end" font-size="10" fill="#6b7280">${escapeXml(format(tick))}</text>`,
      );
    }
  }
  for (const tick of axis.ticks) {
    parts.push(
      `<line x1="${left}" x2="${left + plotWidth}" y1="${fixed(y(tick))}" y2="${fixed(y(tick))}" stroke="#e5e7eb" stroke-width="1"/>`,
      `<text class="tick" x="${left - 6}" y="${fixed(y(tick) + 4)}" text-anchor="end" font-size="11" fill="#374151">${escapeXml(format(tick))}</text>`,
    );
  }
  parts.push('</g>');
  const axisLabelX = 16;
  const axisLabelY = top + plotHeight / 2;
  const scaleNote = chart.scale === 'log' ? ' (log scale)' : '';
  parts.push(
    `<text class="axis-label" x="${axisLabelX}" y="${fixed(axisLabelY)}" text-anchor="middle" font-size="12" fill="#374151" transform="rotate(-90 ${axisLabelX} ${fixed(axisLabelY)})">${escapeXml(chart.yAxisLabel + scaleNote)}</text>`,
  );

  // Bars.
  const band = plotWidth / Math.max(1, groupCount);
  const barsWidth = band * 0.78;
  const barWidth = Math.min(barWidthMax, barsWidth / Math.max(1, seriesCount));
  const gap = Math.min(3, barWidth * 0.12);
  parts.push('<g class="bars">');
  for (let group = 0; group < groupCount; group += 1) {
    const groupLeft = left + band * group + (band - barWidth * seriesCount) / 2;
    for (let series = 0; series < seriesCount; series += 1) {
      const value = chart.values[series]![group];
      const x = groupLeft + barWidth * series + gap / 2;
      const innerWidth = Math.max(1, barWidth - gap);
      const centre = x + innerWidth / 2;
      const color = entries[series]!.color;
      if (!present(value)) {
        const text = chart.missing?.[series]?.[group] ?? 'n/a';
        parts.push(labelAt(centre, bottom - 4, text, innerWidth, 10, '#6b7280', 'missing'));
        continue;
      }
      const barTop = y(value);
      const barHeight = Math.max(chart.scale === 'log' || value > 0 ? 1 : 0, bottom - barTop);
      const note = chart.notes?.[series]?.[group];
      const label = note === undefined ? format(value) : `${format(value)} ${note}`;
      const style = note === undefined ? '' : ` fill-opacity="0.35" stroke="${color}" stroke-dasharray="4 3"`;
      parts.push(
        `<rect class="bar" x="${fixed(x)}" y="${fixed(bottom - barHeight)}" width="${fixed(innerWidth)}" height="${fixed(barHeight)}" fill="${color}"${style}><title>${escapeXml(`${chart.series[series]!.name}, ${chart.groups[group]!.replaceAll('\n', ' ')}: ${label}`)}</title></rect>`,
      );
      parts.push(labelAt(centre, bottom - barHeight - 3, label, innerWidth, 10, '#111827', 'value'));
    }
  }
  parts.push('</g>');

  // Axes and group labels.
  parts.push(
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#6b7280" stroke-width="1"/>`,
    `<line x1="${left}" x2="${left + plotWidth}" y1="${bottom}" y2="${bottom}" stroke="#6b7280" stroke-width="1"/>`,
  );
  parts.push('<g class="groups">');
  for (let group = 0; group < groupCount; group += 1) {
    const centre = left + band * group + band / 2;
    const lines = chart.groups[group]!.split('\n');
    const tspans = lines
      .map(
        (line, index) =>
          `<tspan x="${fixed(centre)}" dy="${index === 0 ? 0 : 15}">${escapeXml(line)}</tspan>`,
      )
      .join('');
    parts.push(
      `<text class="group" x="${fixed(centre)}" y="${bottom + 20}" text-anchor="middle" font-size="12" fill="#111827">${tspans}</text>`,
    );
  }
  parts.push('</g>');
  if (chart.footnote !== undefined) {
    parts.push(
      `<text class="footnote" x="${left}" y="${height - 10}" font-size="11" fill="#6b7280">${escapeXml(chart.footnote)}</text>`,
    );
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** A small label centred at x, its baseline at y; turned upright (reading bottom to top) when wider than `room`. */
function labelAt(
  x: number,
  y: number,
  text: string,
  room: number,
  fontSize: number,
  color: string,
  kind: string,
): string {
  const escaped = escapeXml(text);
  if (textWidth(text, fontSize) <= room + 4) {
    return `<text class="${kind}" x="${fixed(x)}" y="${fixed(y)}" text-anchor="middle" font-size="${fontSize}" fill="${color}">${escaped}</text>`;
  }
  const baselineX = x + fontSize * 0.35;
  return `<text class="${kind}" x="${fixed(baselineX)}" y="${fixed(y)}" text-anchor="start" font-size="${fontSize}" fill="${color}" transform="rotate(-90 ${fixed(baselineX)} ${fixed(y)})">${escaped}</text>`;
}

function fixed(value: number): string {
  return (Math.round(value * 10) / 10).toString();
}

/**
 * Checks that `svg` is well-formed as far as this writer goes: a single `<svg>` root, every element
 * closed in order, attribute values double-quoted, no bare '<' or '&' in text. Returns the element
 * names in document order; throws an Error naming the first problem. (A check, not an XML parser:
 * no comments, CDATA or processing instructions are expected here.)
 */
export function checkWellFormedSvg(svg: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let position = 0;
  const checkText = (text: string, where: string): void => {
    if (/<|&(?!(amp|lt|gt|quot|apos);)/.test(text))
      throw new Error(`unescaped text ${where}: ${text.slice(0, 40)}`);
  };
  for (let match = tag.exec(svg); match !== null; match = tag.exec(svg)) {
    const [, closing, name, , selfClosing] = match as unknown as [string, string, string, string, string];
    checkText(svg.slice(position, match.index), `before <${closing}${name}>`);
    position = match.index + match[0].length;
    if (closing === '/') {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open ?? 'nothing'}>`);
      continue;
    }
    if (stack.length === 0 && names.length > 0) throw new Error(`<${name}> after the root element`);
    names.push(name);
    if (selfClosing !== '/') stack.push(name);
  }
  checkText(svg.slice(position), 'after the last tag');
  if (svg.slice(position).trim() !== '') throw new Error('text after the root element');
  if (stack.length > 0) throw new Error(`<${stack.at(-1)}> not closed`);
  if (names[0] !== 'svg') throw new Error(`the root is <${names[0] ?? 'nothing'}>, not <svg>`);
  return names;
}
