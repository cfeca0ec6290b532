// CodeMirror 6, loaded only by pages with an editor (see editor.js).
import { EditorView } from 'codemirror';
import { EditorState, Compartment } from '@codemirror/state';
import {
  keymap, lineNumbers, highlightActiveLineGutter, highlightSpecialChars, drawSelection,
  dropCursor, rectangularSelection, crosshairCursor, highlightActiveLine,
} from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import {
  indentOnInput, syntaxHighlighting, defaultHighlightStyle, bracketMatching, foldGutter,
  foldKeymap, indentUnit,
} from '@codemirror/language';
import { highlightSelectionMatches, searchKeymap } from '@codemirror/search';

// No bracket auto-closing or completion popups: what is typed is what is saved.
const setup = [
  lineNumbers(),
  highlightActiveLineGutter(),
  highlightSpecialChars(),
  history(),
  foldGutter(),
  drawSelection(),
  dropCursor(),
  EditorState.allowMultipleSelections.of(true),
  indentOnInput(),
  syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
  bracketMatching(),
  rectangularSelection(),
  crosshairCursor(),
  highlightActiveLine(),
  highlightSelectionMatches(),
  keymap.of([...defaultKeymap, ...searchKeymap, ...historyKeymap, ...foldKeymap, indentWithTab]),
];

const theme = EditorView.theme({
  '&': { fontSize: '13px', height: '100%' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.5' },
  '.cm-gutters': { background: '#f6f7f9', borderRight: '1px solid #e3e6ea', color: '#8a94a3' },
  '&.cm-focused': { outline: 'none' },
});

async function languageFor(name) {
  switch (name) {
    case 'python':
      return (await import('./lang/python.js')).language();
    case 'javascript':
      return (await import('./lang/javascript.js')).language();
    case 'json':
      return (await import('./lang/json.js')).language();
    default:
      return [];
  }
}

export async function create(parent, { doc = '', language, readOnly = false, onChange, onSave }) {
  const lang = new Compartment();
  const ro = new Compartment();
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        onSave ? keymap.of([{ key: 'Mod-s', preventDefault: true, run: () => { onSave(); return true; } }]) : [],
        setup,
        theme,
        indentUnit.of(language === 'python' ? '    ' : '  '),
        lang.of(await languageFor(language)),
        ro.of([EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly)]),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) onChange?.(update.state.doc.toString());
        }),
      ],
    }),
  });
  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    async setLanguage(name) {
      view.dispatch({ effects: lang.reconfigure(await languageFor(name)) });
    },
    setReadOnly(flag) {
      view.dispatch({ effects: ro.reconfigure([EditorState.readOnly.of(flag), EditorView.editable.of(!flag)]) });
    },
    focus: () => view.focus(),
    destroy: () => view.destroy(),
  };
}
