// A time-series chart drawn by uPlot (canvas: nothing from the data becomes HTML).
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface SeriesSpec {
  label: string;
  color: string;
}

interface Props {
  title: string;
  unit: string;
  series: SeriesSpec[];
  /** [times (epoch seconds), ...one array per series]. */
  data: (number | null)[][];
  height?: number;
}

/** A line chart that redraws in place when `data` changes. */
export function Chart({ title, unit, series, data, height = 180 }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current!;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? "—" : `${round(v)} ${unit}`),
        })),
      ],
      axes: [{}, { size: 56, values: (_u: uPlot, vals: number[]) => vals.map((v) => `${round(v)}`) }],
      scales: { y: { range: (_u: uPlot, _min: number, max: number) => [0, Math.max(1, max * 1.1)] } },
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
    plot.current = new uPlot(opts, data as uPlot.AlignedData, el);
    const ro = new ResizeObserver(() => {
      plot.current?.setSize({ width: Math.max(200, el.clientWidth), height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // The series layout is fixed per chart; data updates go through setData.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} />
    </figure>
  );
}

function round(v: number): string {
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2).replace(/\.?0+$/, "") || "0";
}
