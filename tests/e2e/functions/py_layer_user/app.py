import greeting  # provided by a layer, from its python/ directory


def handler(event, context):
    return {"word": greeting.WORD}
