// Lists exports nobody imports, with the TypeScript compiler's parser (no new dependency), and exits
// 1 when there are any. The public API is what src/index.ts re-exports; tests and benchmarks count
// as users (of test helpers too). A type, interface or class referenced as a type in its own file counts as used:
// declaration emit needs the types of exported signatures exported. Entry points (src/index.ts,
// src/cli/main.ts, test files, the benchmarks) are not checked themselves.
//
//   node .ci/unused-exports.mjs
import console from 'node:console';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const configPath = path.join(root, 'tsconfig.test.json');
const parsed = ts.parseJsonConfigFileContent(ts.readConfigFile(configPath, ts.sys.readFile).config, ts.sys, root);
const files = parsed.fileNames.map((f) => path.resolve(f));
const options = parsed.options;

const ENTRY = new Set(['src/index.ts', 'src/cli/main.ts', 'bench/run.ts']);
const rel = (f) => path.relative(root, f).split(path.sep).join('/');
// Benchmarks run as processes of their own (bench/run.ts spawns them).
const checked = (f) => !ENTRY.has(rel(f)) && !f.endsWith('.test.ts') && !/^bench\/[^/]+-bench\.ts$/.test(rel(f));

/** file → names imported from it by other files ('*' = all of them). */
const used = new Map();
const use = (file, name) => {
  if (!used.has(file)) used.set(file, new Set());
  used.get(file).add(name);
};
const resolve = (spec, from) => {
  const r = ts.resolveModuleName(spec, from, options, ts.sys).resolvedModule;
  return r === undefined || r.isExternalLibraryImport ? undefined : path.resolve(r.resolvedFileName);
};

/** file → [{ name, isType, line }] of what it exports itself. */
const exportsOf = new Map();
/** file → identifiers referenced in type positions of the file. */
const typeRefs = new Map();

for (const file of files) {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const mine = [];
  const refs = new Set();
  const line = (n) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const isExported = (n) => ts.getModifiers(n)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) === true;
  const visit = (n) => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      const target = resolve(n.moduleSpecifier.text, file);
      const clause = n.importClause;
      if (target !== undefined && clause !== undefined) {
        if (clause.name !== undefined) use(target, 'default');
        const b = clause.namedBindings;
        if (b !== undefined && ts.isNamespaceImport(b)) use(target, '*');
        if (b !== undefined && ts.isNamedImports(b))
          for (const e of b.elements) use(target, (e.propertyName ?? e.name).text);
      }
    } else if (ts.isExportDeclaration(n)) {
      const target =
        n.moduleSpecifier !== undefined && ts.isStringLiteral(n.moduleSpecifier)
          ? resolve(n.moduleSpecifier.text, file)
          : undefined;
      if (n.exportClause === undefined || ts.isNamespaceExport(n.exportClause)) {
        if (target !== undefined) use(target, '*');
        if (n.exportClause !== undefined) mine.push({ name: n.exportClause.name.text, isType: false, line: line(n) });
      } else {
        for (const e of n.exportClause.elements) {
          if (target !== undefined) use(target, (e.propertyName ?? e.name).text);
          mine.push({ name: e.name.text, isType: n.isTypeOnly || e.isTypeOnly, line: line(e) });
        }
      }
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = n.arguments[0];
      const target = arg !== undefined && ts.isStringLiteral(arg) ? resolve(arg.text, file) : undefined;
      if (target !== undefined) use(target, '*');
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      const target = resolve(n.argument.literal.text, file);
      if (target !== undefined)
        use(target, n.qualifier !== undefined && ts.isIdentifier(n.qualifier) ? n.qualifier.text : '*');
    } else if (isExported(n)) {
      const isType = ts.isInterfaceDeclaration(n) || ts.isTypeAliasDeclaration(n) || ts.isClassDeclaration(n);
      if (ts.isVariableStatement(n)) {
        for (const d of n.declarationList.declarations) {
          if (ts.isIdentifier(d.name)) mine.push({ name: d.name.text, isType: false, line: line(d) });
        }
      } else if (n.name !== undefined && ts.isIdentifier(n.name)) {
        const isDefault = ts.getModifiers(n)?.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword) === true;
        mine.push({ name: isDefault ? 'default' : n.name.text, isType, line: line(n) });
      }
    } else if (ts.isExportAssignment(n)) {
      mine.push({ name: 'default', isType: false, line: line(n) });
    }
    if (ts.isTypeReferenceNode(n) && ts.isIdentifier(n.typeName)) refs.add(n.typeName.text);
    if (ts.isExpressionWithTypeArguments(n) && ts.isIdentifier(n.expression)) refs.add(n.expression.text);
    if (ts.isTypeQueryNode(n) && ts.isIdentifier(n.exprName)) refs.add(n.exprName.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  exportsOf.set(file, mine);
  typeRefs.set(file, refs);
}

const unused = [];
for (const [file, mine] of exportsOf) {
  if (!checked(file)) continue;
  const names = used.get(file) ?? new Set();
  if (names.has('*')) continue;
  for (const e of mine) {
    if (names.has(e.name)) continue;
    if (e.isType && typeRefs.get(file).has(e.name)) continue;
    unused.push(`${rel(file)}:${e.line}: ${e.name}`);
  }
}
if (unused.length > 0) {
  console.error(`exports nobody imports (remove the export, or the code):\n  ${unused.join('\n  ')}`);
  process.exitCode = 1;
} else {
  console.log(`no unused exports (${files.length} files)`);
}
