"""Planted realistic bugs in ps09_tokenization: name -> (function, the buggy answer cell, the checks it must fail)."""

BUGS = {
    # --- pair_counts -------------------------------------------------------------------------------------------
    "bug_pairs_unweighted": ("pair_counts", """
def pair_counts(words):
    counts = Counter()
    for word, n in words:
        for pair in zip(word, word[1:]):
            counts[pair] += 1
    return list(counts.items())
""", {"test_weighted_by_count", "test_random_words"}),
    "bug_pairs_across_words": ("pair_counts", """
def pair_counts(words):
    ids = [token for word, n in words for token in word]
    weights = [n for word, n in words for token in word]
    counts = Counter()
    for i in range(len(ids) - 1):
        counts[ids[i], ids[i + 1]] += weights[i]
    return list(counts.items())
""", {"test_no_pair_across_words", "test_random_words"}),
    "bug_pairs_once_per_word": ("pair_counts", """
def pair_counts(words):
    counts = Counter()
    for word, n in words:
        for pair in set(zip(word, word[1:])):
            counts[pair] += n
    return list(counts.items())
""", {"test_one_word", "test_weighted_by_count", "test_random_words"}),
    "bug_pairs_skip_last": ("pair_counts", """
def pair_counts(words):
    counts = Counter()
    for word, n in words:
        for i in range(len(word) - 2):
            counts[word[i], word[i + 1]] += n
    return list(counts.items())
""", {"test_one_word", "test_weighted_by_count", "test_no_pair_across_words", "test_random_words"}),
    # --- best_pair ---------------------------------------------------------------------------------------------
    "bug_best_ties_to_smaller": ("best_pair", """
def best_pair(counts, vocab):
    (a, b), _ = min(counts, key=lambda item: (-item[1], vocab[item[0][0]], vocab[item[0][1]]))
    return (a, b)
""", {"test_tie_to_greater_pair", "test_tie_compares_bytes_not_ids", "test_tie_compares_pairs_not_joined_bytes"}),
    "bug_best_no_tie_break": ("best_pair", """
def best_pair(counts, vocab):
    (a, b), _ = max(counts, key=lambda item: item[1])
    return (a, b)
""", {"test_tie_to_greater_pair", "test_tie_compares_bytes_not_ids", "test_tie_compares_pairs_not_joined_bytes"}),
    "bug_best_compares_ids": ("best_pair", """
def best_pair(counts, vocab):
    (a, b), _ = max(counts, key=lambda item: (item[1], item[0]))
    return (a, b)
""", {"test_tie_compares_bytes_not_ids"}),
    "bug_best_compares_joined_bytes": ("best_pair", """
def best_pair(counts, vocab):
    (a, b), _ = max(counts, key=lambda item: (item[1], vocab[item[0][0]] + vocab[item[0][1]]))
    return (a, b)
""", {"test_tie_compares_pairs_not_joined_bytes"}),
    # --- merge_word --------------------------------------------------------------------------------------------
    "bug_merge_first_only": ("merge_word", """
def merge_word(word, pair, new_id):
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + (new_id,) + word[i + 2:]
    return tuple(word)
""", {"test_every_occurrence", "test_overlapping"}),
    "bug_merge_overlap_twice": ("merge_word", """
def merge_word(word, pair, new_id):
    out = []
    for i, token in enumerate(word):
        if i + 1 < len(word) and (token, word[i + 1]) == pair:
            out.append(new_id)
        elif i > 0 and (word[i - 1], token) == pair:
            continue  # the right half of a pair merged just before
        else:
            out.append(token)
    return tuple(out)
""", {"test_overlapping"}),
    "bug_merge_returns_list": ("merge_word", """
def merge_word(word, pair, new_id):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out
""", {"test_returns_tuple"}),
    "bug_merge_drops_last_token": ("merge_word", """
def merge_word(word, pair, new_id):
    out, i = [], 0
    while i < len(word) - 1:
        if (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)
""", {"test_every_occurrence", "test_overlapping", "test_edges"}),
    # --- learn_merges ------------------------------------------------------------------------------------------
    "bug_learn_ids_off_by_one": ("learn_merges", """
def learn_merges(word_counts, num_merges):
    words = {tuple(w.encode("utf-8")): n for w, n in word_counts.items()}
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for _ in range(num_merges):
        counts = pair_counts(list(words.items()))
        if not counts:
            break
        pair = best_pair(counts, vocab)
        merges.append(pair)
        new_id = 256 + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        words = {merge_word(w, pair, new_id): n for w, n in words.items()}
    return merges
""", {"test_new_ids", "test_matches_train_bpe"}),
    "bug_learn_words_not_merged": ("learn_merges", """
def learn_merges(word_counts, num_merges):
    words = {tuple(w.encode("utf-8")): n for w, n in word_counts.items()}
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for _ in range(num_merges):
        counts = pair_counts(list(words.items()))
        if not counts:
            break
        pair = best_pair(counts, vocab)
        new_id = 256 + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        for w in words:
            merge_word(w, pair, new_id)
        merges.append(pair)
    return merges
""", {"test_number_of_merges", "test_new_ids", "test_weighted_by_count", "test_matches_train_bpe"}),
    "bug_learn_unweighted": ("learn_merges", """
def learn_merges(word_counts, num_merges):
    words = {tuple(w.encode("utf-8")): 1 for w in word_counts}
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for _ in range(num_merges):
        counts = pair_counts(list(words.items()))
        if not counts:
            break
        pair = best_pair(counts, vocab)
        new_id = 256 + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        words = {merge_word(w, pair, new_id): n for w, n in words.items()}
        merges.append(pair)
    return merges
""", {"test_weighted_by_count", "test_matches_train_bpe"}),
    "bug_learn_characters_not_bytes": ("learn_merges", """
def learn_merges(word_counts, num_merges):
    words = {tuple(ord(c) for c in w): n for w, n in word_counts.items()}
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for _ in range(num_merges):
        counts = pair_counts(list(words.items()))
        if not counts:
            break
        pair = best_pair(counts, vocab)
        new_id = 256 + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        words = {merge_word(w, pair, new_id): n for w, n in words.items()}
        merges.append(pair)
    return merges
""", {"test_utf8_bytes"}),
    "bug_learn_no_early_stop": ("learn_merges", """
def learn_merges(word_counts, num_merges):
    words = {tuple(w.encode("utf-8")): n for w, n in word_counts.items()}
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for _ in range(num_merges):
        counts = pair_counts(list(words.items()))
        pair = best_pair(counts, vocab)
        new_id = 256 + len(merges)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        words = {merge_word(w, pair, new_id): n for w, n in words.items()}
        merges.append(pair)
    return merges
""", {"test_number_of_merges"}),
    # --- encode_word -------------------------------------------------------------------------------------------
    "bug_encode_latest_first": ("encode_word", """
def encode_word(word_bytes, merges):
    ranks = {pair: r for r, pair in enumerate(merges)}
    ids = tuple(word_bytes)
    while len(ids) >= 2:
        present = [pair for pair in zip(ids, ids[1:]) if pair in ranks]
        if not present:
            break
        last = max(present, key=ranks.get)
        ids = merge_word(ids, last, 256 + ranks[last])
    return list(ids)
""", {"test_earliest_merge_first", "test_matches_tokenizer"}),
    "bug_encode_most_frequent_first": ("encode_word", """
def encode_word(word_bytes, merges):
    ranks = {pair: r for r, pair in enumerate(merges)}
    ids = tuple(word_bytes)
    while len(ids) >= 2:
        counts = Counter(pair for pair in zip(ids, ids[1:]) if pair in ranks)
        if not counts:
            break
        pair = max(counts, key=counts.get)
        ids = merge_word(ids, pair, 256 + ranks[pair])
    return list(ids)
""", {"test_earliest_merge_first"}),
    "bug_encode_one_merge_only": ("encode_word", """
def encode_word(word_bytes, merges):
    ranks = {pair: r for r, pair in enumerate(merges)}
    ids = tuple(word_bytes)
    present = [pair for pair in zip(ids, ids[1:]) if pair in ranks]
    if present:
        first = min(present, key=ranks.get)
        ids = merge_word(ids, first, 256 + ranks[first])
    return list(ids)
""", {"test_until_none_applies", "test_earliest_merge_first", "test_matches_tokenizer"}),
    "bug_encode_stops_at_two_tokens": ("encode_word", """
def encode_word(word_bytes, merges):
    ranks = {pair: r for r, pair in enumerate(merges)}
    ids = tuple(word_bytes)
    while len(ids) > 2:
        present = [pair for pair in zip(ids, ids[1:]) if pair in ranks]
        if not present:
            break
        first = min(present, key=ranks.get)
        ids = merge_word(ids, first, 256 + ranks[first])
    return list(ids)
""", {"test_until_none_applies", "test_matches_tokenizer"}),
    # --- decode --------------------------------------------------------------------------------------------------
    "bug_decode_strict": ("decode", """
def decode(ids, vocab):
    return b"".join(vocab[i] for i in ids).decode("utf-8")
""", {"test_invalid_bytes"}),
    "bug_decode_token_by_token": ("decode", """
def decode(ids, vocab):
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)
""", {"test_split_character"}),
    "bug_decode_drops_invalid_bytes": ("decode", """
def decode(ids, vocab):
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore")
""", {"test_invalid_bytes"}),
}
