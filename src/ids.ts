import { v7 } from 'uuid';

/** Time-ordered UUIDs (v7): new rows land at the end of each workspace's index range. */
export const newId = (): string => v7();
