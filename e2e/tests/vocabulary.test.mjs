// One vocabulary: the SDK's event types and the unions of tether.d.ts must be
// exactly the server's `EventType`, `Status` and `EndReason` string enums of
// /openapi.json, read from a real server.
//
// tether.d.ts is read with the TypeScript compiler's type checker rather than
// pattern matching: a union spread over lines, written through an alias, or
// widened with a non-literal member (`(string & {})`) is seen as TypeScript
// sees it, and the file must also compile without errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import ts from 'typescript';
import { EVENT_TYPES } from '../../web/sdk/tether.js';
import { REPO_DIR, startServer } from '../lib/harness.mjs';

const DTS = join(REPO_DIR, 'web/sdk/tether.d.ts');

let server;
let schemas;

before(async () => {
  server = await startServer('vocabulary');
  const res = await fetch(server.url + '/openapi.json');
  assert.equal(res.status, 200, 'GET /openapi.json');
  schemas = (await res.json()).components?.schemas ?? {};
});

after(async () => {
  await server?.stop();
});

/** The values of a string-enum schema of the document. */
function serverEnum(name) {
  const schema = schemas[name];
  assert.ok(schema, `components.schemas.${name} is missing from /openapi.json`);
  assert.equal(schema.type, 'string', `${name} is a string enum`);
  assert.ok(Array.isArray(schema.enum), `${name} has an enum`);
  return schema.enum;
}

/**
 * One TypeScript program over the SDK's modules (checkJs) and tether.d.ts,
 * which their JSDoc imports: built once, it is the costly part.
 */
let program;
function sdkProgram() {
  program ??= ts.createProgram([join(REPO_DIR, 'web/sdk/tether.js'), DTS], {
    noEmit: true,
    // not strict: the JS is plain JSDoc-annotated code, not written for
    // noImplicitAny; unknown names, missing fields and wrong shapes still fail
    allowJs: true,
    checkJs: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    allowImportingTsExtensions: true,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
  });
  return program;
}

/** The exported declarations of tether.d.ts, through the type checker. */
function declarations() {
  const checker = sdkProgram().getTypeChecker();
  const file = sdkProgram().getSourceFile(DTS);
  const exported = checker.getExportsOfModule(checker.getSymbolAtLocation(file));
  const typeOf = (name) => {
    const sym = exported.find((s) => s.name === name);
    assert.ok(sym, `tether.d.ts exports ${name}`);
    return checker.getDeclaredTypeOfSymbol(sym);
  };
  return { checker, typeOf };
}

/** The members of a union of string literals; fails on any other member. */
function stringLiterals(checker, type, what) {
  const members = type.isUnion() ? type.types : [type];
  return members.map((m) => {
    assert.ok(m.isStringLiteral(), `${what}: every member is a string literal (found ${checker.typeToString(m)})`);
    return m.value;
  });
}

const sorted = (a) => [...a].sort();

test('EVENT_TYPES is the server\'s EventType enum', () => {
  const server = serverEnum('EventType');
  assert.equal(new Set(EVENT_TYPES).size, EVENT_TYPES.length, 'no duplicates');
  assert.deepEqual(sorted(EVENT_TYPES), sorted(server));
});

test('tether.d.ts unions are the server\'s EventType, Status and EndReason enums', () => {
  const { checker, typeOf } = declarations();
  for (const [dts, schema] of [
    ['EventType', 'EventType'],
    ['SessionStatus', 'Status'],
    ['EndReason', 'EndReason'],
  ]) {
    assert.deepEqual(sorted(stringLiterals(checker, typeOf(dts), dts)), sorted(serverEnum(schema)), `${dts} = ${schema}`);
  }

  // every event type has a shape in TetherEvent, and nothing else does
  const eventTypes = typeOf('TetherEvent').types.flatMap((member) => {
    const prop = checker.getPropertyOfType(member, 'type');
    assert.ok(prop, 'each TetherEvent member has a type');
    return stringLiterals(checker, checker.getTypeOfSymbol(prop), 'TetherEvent.type');
  });
  assert.deepEqual(sorted(eventTypes), sorted(serverEnum('EventType')));

  // a stream.gap carries the skipped range and no session
  const gap = typeOf('StreamGapEvent');
  assert.deepEqual(sorted(checker.getPropertiesOfType(gap).map((p) => p.name)), ['from', 'id', 'to', 'type']);
});

test('tether.d.ts compiles, and the SDK\'s modules type-check against it', () => {
  // the JSDoc of web/sdk/lib names the declared shapes (SessionEvent,
  // StreamGapEvent, …): an event field the declarations lack fails here
  const errors = ts.getPreEmitDiagnostics(sdkProgram()).map((d) => {
    const where = d.file ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: ` : '';
    return where + ts.flattenDiagnosticMessageText(d.messageText, '\n');
  });
  assert.deepEqual(errors, []);
});
