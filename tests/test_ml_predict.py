"""ml.predict and ml.registry on real photos."""

import numpy as np
import pytest

from ml import MODELS, Classifier, UnknownModel, get_spec, load_pixels


@pytest.mark.slow
def test_top1_accuracy_on_the_labelled_photos(classifier, photos):
    crops = [load_pixels(photo.path, classifier.spec) for photo in photos]
    predictions = [p for start in range(0, len(crops), 16) for p in classifier.predict(crops[start : start + 16])]
    correct = sum(pred[0].class_index == photo.class_index for pred, photo in zip(predictions, photos))
    accuracy = correct / len(photos)
    print(f"top-1 accuracy: {correct}/{len(photos)} = {accuracy:.3f}")
    # A plain reference implementation of the same preprocessing gets 0.886.
    assert len(photos) == 201
    assert accuracy >= 0.87


def test_predictions_are_top5_best_first_with_labels(classifier, photos):
    tench = next(photo for photo in photos if photo.path.name == "n01440764_tench.JPEG")
    [predictions] = classifier.predict([load_pixels(tench.path, classifier.spec)])
    assert len(predictions) == 5
    scores = [p.score for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert 0 < sum(scores) <= 1.0001
    assert predictions[0].class_index == 0
    assert predictions[0].label == "tench"
    assert predictions[0].as_dict() == {"label": "tench", "class_index": 0, "score": predictions[0].score}


def test_a_batch_gives_the_same_answers_as_one_at_a_time(classifier, photos):
    crops = [load_pixels(photo.path, classifier.spec) for photo in photos[:6]]
    batched = classifier.predict(crops)
    single = [classifier.predict([crop])[0] for crop in crops]
    for together, alone in zip(batched, single):
        assert together[0].class_index == alone[0].class_index
        assert together[0].score == pytest.approx(alone[0].score, abs=1e-4)


def test_input_is_normalised_to_minus_one_one(classifier):
    crops = np.array([[[[0, 255, 128]]]], dtype=np.uint8)  # one pixel: black, white, mid
    tensor = classifier.to_input(crops)
    assert tensor.shape == (1, 3, 1, 1)
    assert tensor.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_crops_have_the_model_input_size(photos):
    for name in MODELS:
        spec = get_spec(name)
        crop = load_pixels(photos[0].path, spec)
        assert crop.shape == (spec.input_size, spec.input_size, 3)
        assert crop.dtype == np.uint8


def test_unknown_model_names_the_choices():
    with pytest.raises(UnknownModel, match="efficientnet-lite0"):
        Classifier("resnet-9000")


def test_every_class_has_a_name_of_its_own():
    from ml.labels import imagenet_labels

    labels = imagenet_labels()
    # A top-5 never shows one name twice: each of the 1000 classes has its own.
    assert len(labels) == 1000 and len(set(labels)) == 1000
    # The two pairs the clean list names alike keep their WordNet senses apart.
    assert (labels[657], labels[744]) == ("missile", "projectile")
    assert (labels[836], labels[837]) == ("sunglass", "sunglasses")
    assert labels[0] == "tench" and labels[281] == "tabby cat"
