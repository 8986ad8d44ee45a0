"""Scores for E2E outputs: multi-reference BLEU and ROUGE-L, and the slot error rate on hand-made cases."""

import math

import conftest
import pytest
import sacrebleu

from minipeft.data import group_by_mr, load_e2e_csv, load_restaurant
from minipeft.metrics import bleu, e2e_scores, name_rate, perplexity, rouge_l, slot_error_rate, slot_errors

MR = "name[The Eagle], eatType[pub], food[French], priceRange[cheap], customer rating[5 out of 5], " \
     "area[riverside], familyFriendly[no], near[Café Brazil]"


def test_bleu_uses_every_reference_of_an_mr():
    refs = [["The Eagle is a pub.", "There is a pub called The Eagle."], ["Blue Heron serves French food."]]
    assert bleu(["There is a pub called The Eagle.", "Blue Heron serves French food."], refs) == pytest.approx(100)
    one_ref = sacrebleu.corpus_bleu(["The Eagle is a pub called The Eagle."], [["The Eagle is a pub."]]).score
    two_refs = bleu(["The Eagle is a pub called The Eagle."], [refs[0]])
    assert two_refs > one_ref  # a second reference can only add matching n-grams
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference lists"):
        bleu(["a", "b"], [["a"]])


def test_rouge_l_is_the_best_lcs_f_score():
    assert rouge_l(["the eagle is a pub"], [["the eagle is a pub"]]) == pytest.approx(100)
    # words: the eagle is a pub . -> LCS 3, precision 3/3, recall 3/6; the best reference counts
    assert rouge_l(["the eagle pub"], [["The Eagle is a pub.", "no overlap"]]) == pytest.approx(
        100 * 2.44 * 1 * 0.5 / (0.5 + 1.44))
    assert rouge_l(["a b c"], [["a x b y c"]]) == pytest.approx(100 * 2.44 * 1 * 0.6 / (0.6 + 1.44))
    assert rouge_l(["zzz"], [["a b"]]) == 0


def test_a_perfect_sentence_has_no_slot_errors():
    text = ("The Eagle is a cheap French pub by the riverside near Café Brazil, rated 5 out of 5 by customers. "
            "It is not family-friendly.")
    assert slot_errors(MR, text) == {}


@pytest.mark.parametrize(("text", "expected"), [
    ("The Eagle is a cheap French pub by the riverside near Café Brazil. It is not family-friendly.",
     {"customer rating": "missing"}),
    ("The Eagle is a cheap Italian pub by the riverside near Café Brazil, rated 5 out of 5. It is not "
     "family-friendly.", {"food": "wrong"}),
    ("The Eagle is a cheap French pub in the city centre near Café Brazil, rated 5 out of 5. It is "
     "family-friendly.", {"area": "wrong", "familyFriendly": "wrong"}),
    ("A cheap French pub by the riverside, rated 5 out of 5, not family-friendly.", {"name": "missing",
                                                                                   "near": "missing"}),
    ("The Eagle is an expensive French coffee shop by the riverside near Café Brazil with a high customer "
     "rating. Adults only.", {"priceRange": "wrong", "eatType": "wrong"}),
])
def test_missing_and_wrong_slots(text, expected):
    assert slot_errors(MR, text) == expected


def test_names_do_not_count_as_slot_values():
    # "Café Brazil" is a name, not a café: eatType[pub] is still the only eating type said
    assert slot_errors("name[The Eagle], eatType[pub], near[Café Brazil]", "The Eagle pub is near Café Brazil.") == {}
    assert slot_errors("name[The Eagle], eatType[coffee shop], near[Café Brazil]",
                       "The Eagle is near Café Brazil.") == {"eatType": "missing"}


def test_restaurant_is_generic_and_numbers_have_partner_words():
    mr = "name[A], eatType[pub], priceRange[less than £20], customer rating[1 out of 5]"
    assert slot_errors(mr, "A is a cheap pub, a restaurant with a low customer rating.") == {}
    assert slot_errors(mr, "A is a pub with prices under £20 and a rating of 1 out of 5.") == {}
    assert slot_errors(mr, "A is a pub that costs more than £30, rated 5 out of 5.") == {
        "priceRange": "wrong", "customer rating": "wrong"}


@pytest.mark.parametrize(("text", "expected"), [
    # A price word said of the rating states no price (notebook 02's prefix wrote this; E2E's humans write it too)
    ("Willow Tree is rated high by customers and is rated moderate by customers.", {"priceRange": "missing"}),
    ("Willow Tree has a high rating and a moderate customer rating.", {"priceRange": "missing"}),
    ("Willow Tree is a highly rated, moderately priced place.", {}),
    ("Willow Tree is a highly-rated mid-priced place.", {}),
    ("Willow Tree is a moderate place with high ratings.", {}),
])
def test_a_rating_in_words_is_not_a_price(text, expected):
    assert slot_errors("name[Willow Tree], priceRange[moderate], customer rating[high]", text) == expected


def test_slot_error_rate_counts_over_all_slots():
    mrs = ["name[A], food[French]", "name[B], area[riverside], familyFriendly[yes]"]
    assert slot_error_rate(mrs, ["A serves French food.", "B is by the river and kid friendly."]) == 0
    assert slot_error_rate(mrs, ["A serves Indian food.", "B is not family-friendly."]) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="2 MRs but 1 texts"):
        slot_error_rate(mrs, ["A"])
    with pytest.raises(ValueError, match="line 1: unknown slot 'cuisine'"):
        slot_error_rate(["name[A], cuisine[x]"], ["A"])


def test_name_rate_counts_sentences_that_name_their_restaurant():
    mrs = ["name[Alimentum], food[French]", "name[Blue Spice], area[riverside]", "name[Zizzi], eatType[pub]"]
    texts = ["Alimentum serves Indian food.", "The Eagle is by the river.", "A pub."]
    assert name_rate(mrs, texts) == pytest.approx(1 / 3)  # the food is wrong, but the name is right
    with pytest.raises(ValueError, match="3 MRs but 2 texts"):
        name_rate(mrs, texts[:2])


def test_unknown_value_is_a_clear_error():
    with pytest.raises(ValueError, match="value 'Thai'.*known values: Chinese"):
        slot_errors("name[A], food[Thai]", "A serves Thai food.")


def test_offline_references_are_slot_perfect_and_score_themselves_perfectly():
    groups = group_by_mr(load_restaurant("test", "ci"))
    mrs = list(groups)
    assert slot_error_rate(mrs, [groups[mr][0] for mr in mrs]) == 0
    scores = e2e_scores({mr: refs[0] for mr, refs in groups.items()}, groups)
    assert scores["BLEU"] == pytest.approx(100) and scores["ROUGE-L"] == pytest.approx(100)
    assert perplexity(0.0) == 1.0 and perplexity(math.log(50)) == pytest.approx(50)


def test_metrics_on_real_human_references(e2e_devset):
    groups = group_by_mr(load_e2e_csv(e2e_devset))
    mrs = list(groups)
    held_out = [groups[mr][0] for mr in mrs]  # one human reference scored against the others
    others = [groups[mr][1:] for mr in mrs]
    assert all(others)
    score = bleu(held_out, others)
    assert 40 < score < 80  # humans agree with each other, but not word for word
    assert 40 < rouge_l(held_out, others) < 90
    ser = slot_error_rate(mrs, held_out)
    assert 0 < ser < 0.25  # E2E's human references are known to drop or garble some slots


def test_a_missing_dev_set_fails_in_ci_and_skips_loudly_elsewhere(tmp_path, monkeypatch):
    missing, skipped = tmp_path / "devset.csv", []
    monkeypatch.setattr(conftest, "_WITHOUT_DEVSET", skipped)  # what the run's closing line lists
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"missing at {missing}"):
        conftest.devset_or_skip(missing, "a test")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not found"):
        conftest.devset_or_skip(missing, "a test")
    assert skipped == ["a test"]
    missing.write_text("mr,ref\n")
    assert conftest.devset_or_skip(missing, "a test") == missing
