// Types for harper-shard's @harperfast/integration-testing: the harness's, where it has them.
import type { EventEmitter } from 'node:events';
import type { SuiteContext, TestContext } from 'node:test';

export interface StartHarperOptions {
	/** Idle startup cap (ms): sent as the instance's `startup.idle`. */
	startupTimeoutMs?: number;
	/** Absolute startup cap (ms): sent as the instance's `startup.max`. */
	startupMaxMs?: number;
	/** Merged key by key over the plan's `harper.config` (passed to Harper as HARPER_SET_CONFIG). */
	config?: any;
	/** Merged over the plan's `harper.env`; values are sent as strings. */
	env?: any;
	/**
	 * Harper's entry script, sent absolute as `bin`: a new instance runs it, a stopped one boots it on
	 * its data. Else HARPER_INTEGRATION_TEST_INSTALL_SCRIPT; else the plan's Harper, or the one a
	 * stopped instance last ran.
	 */
	harperBinPath?: string;
}

/** Stands in for the harness's ChildProcess: kill() asks harper-shard. */
export declare class HarperProcess extends EventEmitter {
	pid: number | undefined;
	exitCode: number | null;
	signalCode: NodeJS.Signals | string | null;
	killed: boolean;
	stdout: null;
	stderr: null;
	stdin: null;
	readonly connected: false;
	/** harper-shard's id of the instance. */
	readonly instanceId: string;
	/** SIGKILL: the tool's `kill`; SIGTERM, SIGINT, SIGHUP, SIGQUIT: its `stop`; 0: is it running. */
	kill(signal?: NodeJS.Signals | number): boolean;
	on(event: 'exit' | 'close', listener: (code: number | null, signal: string | null) => void): this;
	on(event: 'error', listener: (error: HarperShardError) => void): this;
	on(event: string | symbol, listener: (...args: any[]) => void): this;
	ref(): void;
	unref(): void;
	disconnect(): void;
}

export interface HarperContext {
	/** The instance's ROOTPATH. */
	dataRootDir: string;
	admin: { username: string; password: string };
	httpURL: string;
	operationsAPIURL: string;
	hostname: string;
	process: HarperProcess;
	logDir?: string;
	/** Empty: harper-shard watches Harper's output itself. */
	startupOutput?: { stdout: string; stderr: string };
	/** harper-shard's id of the instance (`i1`, …, or `main`). */
	id?: string;
	/** Its label in the reports. */
	name?: string;
	mqttURL?: string;
	/** `https://<hostname>:9927`, when the instance's `config` sets `tls` (or `http.mtls`). */
	httpsURL?: string;
	/** The instance's `config.tls`, its paths absolute: the certificate a TLS client trusts. */
	tls?: TlsFiles | TlsFiles[];
}

export interface TlsFiles {
	certificate?: string;
	privateKey?: string;
	certificateAuthority?: string;
}

export interface HarperTestContext {
	name?: string;
	harper?: Partial<HarperContext>;
}

export interface StartedHarperTestContext extends HarperTestContext {
	harper: HarperContext;
}

export interface ContextWithHarper extends SuiteContext, TestContext {
	harper: HarperContext;
}

export declare function createHarperContext(name?: string): HarperTestContext;
export declare function startHarper(ctx: HarperTestContext, options?: StartHarperOptions): Promise<StartedHarperTestContext>;
export declare function setupHarperWithFixture(
	ctx: HarperTestContext,
	fixturePath: string,
	options?: StartHarperOptions
): Promise<StartedHarperTestContext>;
export declare function killHarper(ctx: StartedHarperTestContext, options?: { graceMs?: number }): Promise<void>;
export declare function teardownHarper(ctx: StartedHarperTestContext): Promise<void>;
export declare function sendOperation(context: HarperContext, operation: any): Promise<any>;
export declare function targz(dirPath: string): Promise<string>;

export declare function validateLoopbackAddressPool(): Promise<{
	successful: string[];
	failed: { loopbackAddress: string; error: Error }[];
}>;
/** Rejects: under harper-shard an address comes with the instance the tool starts. */
export declare function getNextAvailableLoopbackAddress(): Promise<string>;
export declare function releaseLoopbackAddress(address: string): Promise<void>;
export declare function releaseAllLoopbackAddressesForCurrentProcess(): Promise<void>;
export declare class ForeignListenerError extends Error {}

export declare const OPERATIONS_API_PORT: number;
export declare const DEFAULT_ADMIN_USERNAME: string;
export declare const DEFAULT_ADMIN_PASSWORD: string;
export declare const DEFAULT_STARTUP_TIMEOUT_MS: number;
export declare const DEFAULT_STARTUP_MAX_MS: number;
export declare const DEFAULT_TEARDOWN_GRACE_MS: number;
export declare const DEFAULT_PORT_RELEASE_TIMEOUT_MS: number;
export declare const HARPER_RUNTIME: string;

export declare class HarperShardError extends Error {
	code: string | undefined;
	tail: string[];
	request?: object;
	answer?: object;
}
export declare class HarperStartupError extends HarperShardError {
	constructor(message: string, stdout?: string, stderr?: string);
	stdout: string;
	stderr: string;
}
/** One raw control request (docs/control.md): resolves with an ok answer, rejects otherwise. */
export declare function sendControlRequest(request: { op: string; [key: string]: unknown }, options?: { socketPath?: string }): Promise<any>;
