/** A line icon: one stroked path on a 24×24 grid, drawn in the current text colour. */
export function LineIcon({ d, size, weight, class: className }: { d: string; size: number; weight: number; class?: string }) {
  return (
    <svg class={className} viewBox="0 0 24 24" width={size} height={size} aria-hidden="true">
      <path d={d} fill="none" stroke="currentColor" stroke-width={weight} stroke-linecap="round" stroke-linejoin="round" />
    </svg>
  );
}
