import { restartSuite } from './workload.mjs';

restartSuite(import.meta.filename, 12);
