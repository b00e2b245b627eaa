import { operationsSuite } from './workload.mjs';

operationsSuite(import.meta.filename);
