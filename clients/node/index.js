// @harperfast/integration-testing, as a client of harper-shard's control socket: the same
// exports, signatures and semantics as the TypeScript harness, with every Harper instance started,
// stopped and removed by harper-shard. README.md lists what maps to what, and what differs.
export {
	startHarper,
	setupHarperWithFixture,
	killHarper,
	teardownHarper,
	sendOperation,
	createHarperContext,
	HarperProcess,
	OPERATIONS_API_PORT,
	DEFAULT_ADMIN_USERNAME,
	DEFAULT_ADMIN_PASSWORD,
	DEFAULT_STARTUP_TIMEOUT_MS,
	DEFAULT_STARTUP_MAX_MS,
	DEFAULT_TEARDOWN_GRACE_MS,
	DEFAULT_PORT_RELEASE_TIMEOUT_MS,
	HARPER_RUNTIME,
} from './lib/lifecycle.js';

export {
	validateLoopbackAddressPool,
	getNextAvailableLoopbackAddress,
	releaseLoopbackAddress,
	releaseAllLoopbackAddressesForCurrentProcess,
	ForeignListenerError,
} from './lib/loopback.js';

export { targz } from './lib/targz.js';

// harper-shard's own: the errors, and the raw control requests (status, restart, …).
export { HarperShardError, HarperStartupError, sendControlRequest } from './lib/control.js';
