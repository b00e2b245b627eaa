// The harness's loopback pool, which harper-shard replaces: the tool hands every instance its
// address (from the plan's `pool`, proven free on every port), so a test cannot take one itself.
import { HarperShardError } from './control.js';

/**
 * Rejects: under harper-shard an address comes with an instance. Start one (startHarper on a
 * fresh context) and read ctx.harper.hostname.
 */
export async function getNextAvailableLoopbackAddress() {
	throw new HarperShardError(
		'getNextAvailableLoopbackAddress(): under harper-shard the tool hands out addresses, each with the ' +
			'instance it starts (from the plan\'s `pool`, every port proven free first), so a test cannot take ' +
			'one for itself. Call startHarper(ctx) on a fresh context and read ctx.harper.hostname; to start ' +
			'several instances, use one context each.',
		{ code: 'unsupported' }
	);
}

/** Does nothing: harper-shard gives an instance's address back when the instance is released. */
export async function releaseLoopbackAddress() {}

/** Does nothing: harper-shard releases every instance of the shard when its commands end. */
export async function releaseAllLoopbackAddressesForCurrentProcess() {}

/**
 * Resolves with no addresses checked and none failed: the pool is the tool's
 * (`harper-shard pool validate` checks it).
 */
export async function validateLoopbackAddressPool() {
	return { successful: [], failed: [] };
}

/** The harness's error for an address another process listens on; harper-shard never throws it. */
export class ForeignListenerError extends Error {
	constructor(message) {
		super(message);
		this.name = 'ForeignListenerError';
	}
}
