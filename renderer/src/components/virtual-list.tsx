import { useCallback, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from 'react';

export interface VirtualListProps<T> {
  readonly items: readonly T[];
  readonly rowHeight: number;
  readonly itemKey: (item: T) => string | number;
  readonly renderRow: (item: T, index: number) => ReactNode;
  /** keep the newest (last) row in view while the admin has not scrolled up */
  readonly followTail?: boolean;
  readonly label: string;
  /** header row(s), rendered above the scroller */
  readonly header?: ReactNode;
  readonly empty?: ReactNode;
  readonly overscan?: number;
}

/**
 * A fixed-row-height virtual list: only the rows in view (plus a few) are in the DOM, so a
 * 2,000-row ring refreshed four times a second costs a few dozen row renders a frame.
 */
export function VirtualList<T>({ items, rowHeight, itemKey, renderRow, followTail = false, label, header, empty, overscan = 8 }: VirtualListProps<T>) {
  const scroller = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(400);
  const atBottom = useRef(true);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);

  const onScroll = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollTop + el.clientHeight >= el.scrollHeight - rowHeight;
    setScrollTop(el.scrollTop);
  }, [rowHeight]);

  const total = items.length * rowHeight;
  useEffect(() => {
    const el = scroller.current;
    if (el && followTail && atBottom.current) {
      el.scrollTop = el.scrollHeight;
      setScrollTop(el.scrollTop);
    }
  }, [items, followTail, total]);

  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(items.length, Math.ceil((scrollTop + height) / rowHeight) + overscan);
  const rows: ReactNode[] = [];
  for (let i = first; i < last; i++) {
    const item = items[i];
    if (item === undefined) continue;
    rows.push(
      <div key={itemKey(item)} role="row" aria-rowindex={i + 2} className="vrow" style={{ top: i * rowHeight, height: rowHeight }}>
        {renderRow(item, i)}
      </div>,
    );
  }
  return (
    <div role="table" aria-label={label} aria-rowcount={items.length + 1} className="vtable">
      {header}
      <div ref={scroller} className="vscroll" onScroll={onScroll} tabIndex={0} aria-label={`${label}, scrollable`}>
        {items.length === 0 && empty ? <div className="vempty">{empty}</div> : null}
        <div className="vspacer" style={{ height: total }} role="rowgroup">
          {rows}
        </div>
      </div>
    </div>
  );
}
