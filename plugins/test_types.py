"""The plugin SDK's TypeScript declarations (plugins/sdk) and the plugins of this
directory type-check with the real TypeScript compiler under plugins/tsconfig.json, whose
`lib` is ES2023 plus the isolate's globals: an editor offers what plugins really have, and
nothing of the DOM. The compiler comes from npm (scripts/test installs Node.js)."""

import json
import subprocess
from pathlib import Path

PLUGINS = Path(__file__).resolve().parent
TYPESCRIPT = "typescript@5.9.3"


def tsc(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["npx", "--yes", "-p", TYPESCRIPT, "tsc", "-p", str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_sdk_and_the_plugins_type_check():
    result = tsc(PLUGINS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_isolate_globals_are_declared_and_the_dom_is_not(tmp_path):
    (tmp_path / "probe.ts").write_text(
        'const url = new URL("/a?b=1", "http://example.com");\n'
        'const b: string | null = url.searchParams.get("b");\n'
        "const bytes: Uint8Array = new TextEncoder().encode(atob(btoa(\"x\")));\n"
        "console.info(new TextDecoder().decode(bytes), structuredClone({ b }));\n"
        'document.title = "a browser";\n'
    )
    (tmp_path / "tsconfig.json").write_text(
        json.dumps(
            {
                "extends": str(PLUGINS / "tsconfig.json"),
                "include": [str(PLUGINS / "sdk" / "*.d.ts"), "probe.ts"],
            }
        )
    )
    result = tsc(tmp_path)
    errors = [line for line in result.stdout.splitlines() if "error TS" in line]
    assert len(errors) == 1, result.stdout + result.stderr
    assert "probe.ts(5," in errors[0] and "'document'" in errors[0], errors
