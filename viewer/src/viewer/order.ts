// Display order of a series' instances. Its own module, with no Cornerstone import, because the
// viewer's first script (entry.ts, the preview of the first image) needs it too.
import { type DicomJsonDataset, Tag, num, nums } from '../dicomweb';

function normal(iop: number[]): number[] {
  const [a, b, c, d, e, f] = iop;
  return [b * f - c * e, c * d - a * f, a * e - b * d];
}

/** Display order: InstanceNumber, then position along the slice normal. */
export function sortInstances(instances: DicomJsonDataset[]): DicomJsonDataset[] {
  const iop = nums(instances[0], Tag.ImageOrientationPatient);
  const n = iop.length === 6 ? normal(iop) : undefined;
  const pos = (ds: DicomJsonDataset) => {
    const p = nums(ds, Tag.ImagePositionPatient);
    return n && p.length === 3 ? p[0] * n[0] + p[1] * n[1] + p[2] * n[2] : 0;
  };
  return [...instances].sort(
    (a, b) => (num(a, Tag.InstanceNumber) ?? 0) - (num(b, Tag.InstanceNumber) ?? 0) || pos(a) - pos(b),
  );
}
