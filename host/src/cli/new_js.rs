//! `host new NAME --lang js|ts`: a JavaScript or TypeScript plugin project on
//! `guest-sdk-js`, copied in with the contract: `npm install` brings componentize-js
//! (and TypeScript), `npm run build` makes the component, `npm test` runs the unit tests
//! on Node.js (TypeScript: type-checked first).

use anyhow::Context as _;

/// The SDK's files and the contract, copied into the project.
const SDK: &str = include_str!("../../../guest-sdk-js/pipeline-plugin.js");
const SDK_TYPES: &str = include_str!("../../../guest-sdk-js/pipeline-plugin.d.ts");
const ENTRY: &str = include_str!("../../../guest-sdk-js/component.js");
const BUILD: &str = include_str!("../../../guest-sdk-js/build.mjs");
const WIT: &str = include_str!("../../../wit/plugin.wit");
/// The SDK's own tool versions: the project pins the same.
const SDK_PACKAGE: &str = include_str!("../../../guest-sdk-js/package.json");

const APP_JS: &str = include_str!("../../../guest-sdk-js/template/app.js");
const APP_TS: &str = include_str!("../../../guest-sdk-js/template/app.ts");
const TEST_JS: &str = include_str!("../../../guest-sdk-js/template/app.test.js");
const TEST_TS: &str = include_str!("../../../guest-sdk-js/template/app.test.ts");
const TSCONFIG: &str = include_str!("../../../guest-sdk-js/template/tsconfig.json");

/// What `record.json()` says of `not json` in a component (SpiderMonkey's words): the
/// project's `bad-input.json` case expects it.
pub(super) const JSON_ERROR: &str =
    "invalid JSON payload: JSON.parse: unexpected keyword at line 1 column 1 of the JSON data";

/// The project's files, but its golden cases (`new` adds them).
pub(super) fn files(name: &str, typescript: bool) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut files = vec![
        ("package.json", package_json(name, typescript)?),
        ("sdk/pipeline-plugin.js", SDK.into()),
        ("sdk/pipeline-plugin.d.ts", SDK_TYPES.into()),
        ("sdk/component.js", ENTRY.into()),
        ("sdk/build.mjs", BUILD.into()),
        ("wit/plugin.wit", WIT.into()),
        (".gitignore", "/node_modules\n/build\n/*.wasm\n".into()),
        (
            "README.md",
            README
                .replace("{name}", name)
                .replace(
                    "{lang}",
                    if typescript {
                        "TypeScript"
                    } else {
                        "JavaScript"
                    },
                )
                .replace("{app}", if typescript { "app.ts" } else { "app.js" }),
        ),
    ];
    if typescript {
        files.extend([
            ("app.ts", APP_TS.replace("{name}", name)),
            ("test/app.test.ts", TEST_TS.into()),
            ("tsconfig.json", TSCONFIG.into()),
        ]);
    } else {
        files.extend([
            ("app.js", APP_JS.replace("{name}", name)),
            ("test/app.test.js", TEST_JS.into()),
        ]);
    }
    Ok(files)
}

/// The project's `package.json`: its scripts, and the SDK's own pins of the tools
/// (TypeScript's only for a TypeScript project).
fn package_json(name: &str, typescript: bool) -> anyhow::Result<String> {
    let sdk: serde_json::Value =
        serde_json::from_str(SDK_PACKAGE).context("the SDK's package.json (host bug)")?;
    let mut tools = serde_json::Map::new();
    if let Some(pins) = sdk["devDependencies"].as_object() {
        for (tool, version) in pins {
            let typing = tool == "typescript" || tool.starts_with("@types/");
            if typescript || !typing {
                tools.insert(tool.clone(), version.clone());
            }
        }
    }
    // TypeScript: type-checked and compiled with the tests, the SDK beside them, then run.
    // The files by a glob: Node 21 and later take `--test`'s arguments as globs, not
    // folders.
    let test = if typescript {
        "tsc && mkdir -p build/sdk && cp sdk/pipeline-plugin.js build/sdk/ && node --test build/test/*.test.js"
    } else {
        "node --test test/*.test.js"
    };
    let package = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "type": "module",
        "private": true,
        "scripts": {
            "build": format!("node sdk/build.mjs . --out {name}.wasm"),
            "test": test,
        },
        "devDependencies": tools,
    });
    let mut text = serde_json::to_string_pretty(&package)?;
    text.push('\n');
    Ok(text)
}

const README: &str = r#"# {name}

A transform plugin for the pipeline host, in {lang}: `{app}` on `sdk/pipeline-plugin.js`
(the host's JavaScript SDK, copied in, with its TypeScript declarations), built against
`wit/plugin.wit` (the host's contract, copied in) with componentize-js. Node.js 20 or later.

```sh
npm install                                          # componentize-js (and TypeScript)
npm run build                                        # the component: {name}.wasm
npm test                                             # unit tests, on Node.js
host test --plugin {name}.wasm --cases tests/cases
host run --plugin {name}.wasm --input orders.jsonl --dlq dlq.jsonl
host publish --plugin {name}.wasm --to s3://BUCKET/plugins/{name}/
```

- `{app}`: the transform. Return an `Output`, an array of outputs or nothing (dropped on
  purpose); throw `DomainError` to send the record to the dead-letter queue,
  `InfrastructureError` to have it retried. Any other exception is a bug: the host
  isolates the record and dead-letters it as a `trap`.
- Numbers: JSON's numbers are doubles here. `Output.json` writes a `BigInt` as its exact
  digits (an integer past 2^53 as a `number` would print rounded), and an integral number
  without a fraction.
- `tests/cases/*.json`: golden cases. `host test --update` writes each case's `expect`
  from what the plugin does now; without it, a change prints a diff and fails.
- A JavaScript component is about 12 MB (the engine is inside) and takes seconds to
  compile; the host keeps the compiled code in its cache (`--cache-dir`), so later starts
  take milliseconds.
"#;
