"""Forced alignment of known text (`w2v align`, `w2vcli.align`).

    viterbi.py   CTC state graph with optional garbage units; pruned, checkpointed Viterbi search
    text.py      the text as written -> the model's units, and back to words and characters
    align.py     AlignOptions, Alignment; emissions -> path -> timed, scored words (align, align_items)
    formats.py   jsonl, srt, vtt, Praat TextGrid, CTM, Audacity labels
    segment.py   --segment: a long recording and its text -> a training manifest of utterances
"""
